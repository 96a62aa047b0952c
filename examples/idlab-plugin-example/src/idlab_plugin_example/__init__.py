"""An example idlab plugin: a small residual CNN (model `residual_cnn`) and the UCI wine table (dataset `wine`).

`specs` holds what the lab's API reads (torch-free descriptions, named by the entry points);
`residual_cnn` and `wine` hold what only the worker imports (the torch module, the loader).
"""
