"""The bottom layer: errors, labels, CSV writing, cores and thread pools, devices. Imports no other subpackage."""
