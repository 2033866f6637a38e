#!/bin/sh
# CMAKE_ARGS for building llama-cpp-python on this machine: the CPU's own vector extensions,
# named one by one, with AMX always off. GGML_NATIVE=ON would pick the same extensions but
# also AMX, and on CPUs with AMX that build produced garbage and crashed; with the list
# spelled out, the build is also free of -march=native surprises.
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { case " $flags " in *" $1 "*) echo ON ;; *) echo OFF ;; esac; }
printf '%s' "-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
printf ' %s' "-DGGML_AVX=$(has avx)" "-DGGML_AVX2=$(has avx2)" "-DGGML_FMA=$(has fma)" \
  "-DGGML_F16C=$(has f16c)" "-DGGML_BMI2=$(has bmi2)" "-DGGML_AVX_VNNI=$(has avx_vnni)" \
  "-DGGML_AVX512=$(has avx512f)" "-DGGML_AVX512_VNNI=$(has avx512_vnni)" \
  "-DGGML_AVX512_BF16=$(has avx512_bf16)" "-DGGML_AVX512_VBMI=$(has avx512vbmi)"
printf ' %s\n' "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF"
