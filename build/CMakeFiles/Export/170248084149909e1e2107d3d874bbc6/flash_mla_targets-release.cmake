#----------------------------------------------------------------
# Generated CMake target import file for configuration "Release".
#----------------------------------------------------------------

# Commands may need to know the format version.
set(CMAKE_IMPORT_FILE_VERSION 1)

# Import target "flash_mla::flash_mla" for configuration "Release"
set_property(TARGET flash_mla::flash_mla APPEND PROPERTY IMPORTED_CONFIGURATIONS RELEASE)
set_target_properties(flash_mla::flash_mla PROPERTIES
  IMPORTED_LINK_INTERFACE_LANGUAGES_RELEASE "CUDA;CXX"
  IMPORTED_LOCATION_RELEASE "${_IMPORT_PREFIX}/lib/libflash_mla.a"
  )

list(APPEND _cmake_import_check_targets flash_mla::flash_mla )
list(APPEND _cmake_import_check_files_for_flash_mla::flash_mla "${_IMPORT_PREFIX}/lib/libflash_mla.a" )

# Commands beyond this point should not need to know the version.
set(CMAKE_IMPORT_FILE_VERSION)
