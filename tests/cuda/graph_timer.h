// Timing of CUDA work for the perf tests: many calls captured into one graph and replayed once.
#pragma once

#include <cuda_runtime.h>

#include "device_buffer.h"

namespace marlin::test {

// Mean milliseconds of `iterations` calls of launch(stream) captured into one graph.
template <typename F>
inline float graph_ms(F launch, int iterations) {
  cudaStream_t stream;
  cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  cudaGraph_t graph;
  cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "begin capture");
  for (int i = 0; i < iterations; ++i) launch(stream);
  cuda_ok(cudaStreamEndCapture(stream, &graph), "end capture");
  cudaGraphExec_t exec;
  cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  cudaGraphDestroy(graph);
  cuda_ok(cudaGraphLaunch(exec, stream), "warm-up");
  cudaEvent_t start, stop;
  cuda_ok(cudaEventCreate(&start), "event");
  cuda_ok(cudaEventCreate(&stop), "event");
  cuda_ok(cudaEventRecord(start, stream), "record");
  cuda_ok(cudaGraphLaunch(exec, stream), "graph launch");
  cuda_ok(cudaEventRecord(stop, stream), "record");
  cuda_ok(cudaEventSynchronize(stop), "sync");
  float ms = 0;
  cuda_ok(cudaEventElapsedTime(&ms, start, stop), "elapsed");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaGraphExecDestroy(exec);
  cudaStreamDestroy(stream);
  return ms / float(iterations);
}

}  // namespace marlin::test
