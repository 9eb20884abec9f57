
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/src/cuda/combine.cu" "CMakeFiles/flash_mla.dir/src/cuda/combine.cu.o" "gcc" "CMakeFiles/flash_mla.dir/src/cuda/combine.cu.o.d"
  "/work/main/src/cuda/runtime.cu" "CMakeFiles/flash_mla.dir/src/cuda/runtime.cu.o" "gcc" "CMakeFiles/flash_mla.dir/src/cuda/runtime.cu.o.d"
  "/work/main/src/cuda/schedule.cu" "CMakeFiles/flash_mla.dir/src/cuda/schedule.cu.o" "gcc" "CMakeFiles/flash_mla.dir/src/cuda/schedule.cu.o.d"
  "/work/main/src/cuda/sm90/decode_dense/launch.cu" "CMakeFiles/flash_mla.dir/src/cuda/sm90/decode_dense/launch.cu.o" "gcc" "CMakeFiles/flash_mla.dir/src/cuda/sm90/decode_dense/launch.cu.o.d"
  "/work/main/src/core/api.cpp" "CMakeFiles/flash_mla.dir/src/core/api.cpp.o" "gcc" "CMakeFiles/flash_mla.dir/src/core/api.cpp.o.d"
  "/work/main/src/core/schedule.cpp" "CMakeFiles/flash_mla.dir/src/core/schedule.cpp.o" "gcc" "CMakeFiles/flash_mla.dir/src/core/schedule.cpp.o.d"
  "/work/main/src/core/tensor.cpp" "CMakeFiles/flash_mla.dir/src/core/tensor.cpp.o" "gcc" "CMakeFiles/flash_mla.dir/src/core/tensor.cpp.o.d"
  "/work/main/src/core/validate.cpp" "CMakeFiles/flash_mla.dir/src/core/validate.cpp.o" "gcc" "CMakeFiles/flash_mla.dir/src/core/validate.cpp.o.d"
  "/work/main/src/cpu/decode_cpu.cpp" "CMakeFiles/flash_mla.dir/src/cpu/decode_cpu.cpp.o" "gcc" "CMakeFiles/flash_mla.dir/src/cpu/decode_cpu.cpp.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
