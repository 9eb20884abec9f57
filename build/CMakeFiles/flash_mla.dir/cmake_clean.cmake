file(REMOVE_RECURSE
  "CMakeFiles/flash_mla.dir/src/core/api.cpp.o"
  "CMakeFiles/flash_mla.dir/src/core/api.cpp.o.d"
  "CMakeFiles/flash_mla.dir/src/core/schedule.cpp.o"
  "CMakeFiles/flash_mla.dir/src/core/schedule.cpp.o.d"
  "CMakeFiles/flash_mla.dir/src/core/tensor.cpp.o"
  "CMakeFiles/flash_mla.dir/src/core/tensor.cpp.o.d"
  "CMakeFiles/flash_mla.dir/src/core/validate.cpp.o"
  "CMakeFiles/flash_mla.dir/src/core/validate.cpp.o.d"
  "CMakeFiles/flash_mla.dir/src/cpu/decode_cpu.cpp.o"
  "CMakeFiles/flash_mla.dir/src/cpu/decode_cpu.cpp.o.d"
  "CMakeFiles/flash_mla.dir/src/cuda/combine.cu.o"
  "CMakeFiles/flash_mla.dir/src/cuda/combine.cu.o.d"
  "CMakeFiles/flash_mla.dir/src/cuda/runtime.cu.o"
  "CMakeFiles/flash_mla.dir/src/cuda/runtime.cu.o.d"
  "CMakeFiles/flash_mla.dir/src/cuda/schedule.cu.o"
  "CMakeFiles/flash_mla.dir/src/cuda/schedule.cu.o.d"
  "CMakeFiles/flash_mla.dir/src/cuda/sm90/decode_dense/launch.cu.o"
  "CMakeFiles/flash_mla.dir/src/cuda/sm90/decode_dense/launch.cu.o.d"
  "libflash_mla.a"
  "libflash_mla.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CUDA CXX)
  include(CMakeFiles/flash_mla.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
