"""GPU measurement (NVML), the GPU catalog, and the inventory model. Only this package imports pynvml."""
