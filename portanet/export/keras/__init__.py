"""Reading Keras files: an HDF5 probe in a child process, safety checks, routing to the loader."""
