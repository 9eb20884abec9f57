file(REMOVE_RECURSE
  "libflash_mla.a"
)
