# Empty compiler generated dependencies file for flash_mla.
# This may be replaced when dependencies are built.
