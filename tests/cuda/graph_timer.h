// Timing of CUDA work for the perf tests.
#pragma once

#include <cuda_runtime.h>

#include "device_buffer.h"

namespace marlin::test {

// Mean milliseconds per call of `launch(stream)`: `iterations` calls captured into one CUDA graph
// (GPU time, as a graph-replayed decode step sees it), or launched one by one (adds host overhead).
template <typename F>
inline float time_ms(F launch, int iterations, bool graph) {
  cudaStream_t stream;
  cuda_ok(cudaStreamCreate(&stream), "stream");
  cudaGraphExec_t exec = nullptr;
  if (graph) {
    cudaGraph_t g;
    cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "begin capture");
    for (int i = 0; i < iterations; ++i) launch(stream);
    cuda_ok(cudaStreamEndCapture(stream, &g), "end capture");
    cuda_ok(cudaGraphInstantiate(&exec, g, 0), "instantiate");
    cudaGraphDestroy(g);
  }
  auto run = [&] {
    if (graph)
      cuda_ok(cudaGraphLaunch(exec, stream), "graph launch");
    else
      for (int i = 0; i < iterations; ++i) launch(stream);
  };
  run();  // warm-up
  cudaEvent_t start, stop;
  cuda_ok(cudaEventCreate(&start), "event");
  cuda_ok(cudaEventCreate(&stop), "event");
  cuda_ok(cudaEventRecord(start, stream), "record");
  run();
  cuda_ok(cudaEventRecord(stop, stream), "record");
  cuda_ok(cudaEventSynchronize(stop), "sync");
  float ms = 0;
  cuda_ok(cudaEventElapsedTime(&ms, start, stop), "elapsed");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (exec) cudaGraphExecDestroy(exec);
  cudaStreamDestroy(stream);
  return ms / float(iterations);
}

// Mean milliseconds of `iterations` calls of launch(stream) captured into one graph.
template <typename F>
inline float graph_ms(F launch, int iterations) {
  return time_ms(launch, iterations, true);
}

}  // namespace marlin::test
