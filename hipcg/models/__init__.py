"""Energy models that follow the model-file contract (:mod:`hipcg.modelfile`)."""
