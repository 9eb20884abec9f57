// flash-mla-phases: where a block's time goes in the Hopper kernel's consumers (and, in the studies whose names
// begin "fp8 ", in the narrow FP8 kernel's roles: study_narrow; the argument fp8 also selects the dense kernel's
// "d64 ... fp8-..." studies). Built only with
// -DFLASH_MLA_TRACE=ON (the library then stamps clock64 at every consumer hand-off of the first
// kPhaseIters blocks of each CTA, kernel.cuh FLASH_MLA_PHASE_AT); never a release build. For each
// workload it prints the median time of one call (stream launches, no graph) and, per consumer, the
// median cycle of each event after consumer 0 began the block, over CTAs and blocks 2 .. kPhaseIters-2.
// The stamps cost a few percent and shift the schedule slightly: compare builds with flash-mla-bench,
// and read a stamp taken just after a bar.sync as "issued" (SASS BAR.SYNC.DEFER_BLOCKING lets the
// clock read run before the barrier releases).
// Then, from the kernel's per-CTA trace slots (%globaltimer, kernel.cuh FLASH_MLA_TRACE_AT), where one
// call's fixed time goes: each CTA's entry, first Q tile, first block (when consumer 0 has its K), the
// block interval (blocks 1..39), a piece change (a piece's store to the next piece's Q tile ready), the
// last block, the last store and the exit, in microseconds after the first CTA's entry (median and max
// over CTAs). With FLASH_MLA_PHASES_DUMP=DIR, each dense study also writes its CTAs' parts and stamps to a file
// there (dump_ctas).
//
//   cmake -S . -B build-trace -DFLASH_MLA_TRACE=ON && cmake --build build-trace --target flash-mla-phases
//   build-trace/cli/flash-mla-phases
#include <cuda_runtime.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/params.hpp"
#include "decode_call.hpp"
#include "cuda/sm90/decode_dense/trace_layout.hpp"
#include "cuda/sm90/decode_narrow/trace_layout.hpp"
#include "flash_mla/flash_mla.hpp"
#include "workload.hpp"

namespace flash_mla::sm90::dense {
extern void* g_phase_buffer;  // [kPhaseCtas][2][kPhaseIters][kPhaseEvents] long long, set by the last launch
extern void* g_trace_buffer;  // [kTraceCtas][kTraceSlots] unsigned long long, set by the last launch
}
namespace flash_mla::sm90::narrow {
extern void* g_phase_buffer;  // [kPhaseCtas][kPhaseIters][kPhaseEvents] long long, set by the last launch
}

namespace {

using namespace flash_mla;

// The dense kernel's trace layout (decode_dense/trace_layout.hpp): the phase buffer's shape and the timeline's
// slots.
using namespace sm90::dense;

const char* const kEpilogueNames[kEpilogueSlots] = {"C0 loop done", "C1 loop done", "C0 rows staged",
                                                    "C0 staged",    "C1 staged",    "C1 copies issued",
                                                    "C0 stored",    "C1 stored"};
// The seesaw (16-bit caches) stamps per pair: 0 begin, 1 its stage's first group landed, 12 its RoPE group,
// 11 its last group, 2 S masked, 4 exp, 7 own max and P published, 8 its own block's P·V done, 9 the other
// block's P·V done, 10 the other consumer's max read.
const char* const kEventNames[kPhaseEvents] = {"begin",     "K landed",   "S masked", "max",      "exp",
                                               "tail",      "(unused)",   "kPReady",  "P·V done", "2nd P·V done",
                                               "other max", "last group", "RoPE in",  "(unused)", "(unused)",
                                               "(unused)"};

// The narrow FP8 kernel's per-block stamps: layout and events from decode_narrow/trace_layout.hpp.
namespace narrow = sm90::narrow;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <typename V>
void* upload(const V& v) {
  void* d = nullptr;
  check(cudaMalloc(&d, v.size() * sizeof(v[0]) + 16), "cudaMalloc");
  check(cudaMemcpy(d, v.data(), v.size() * sizeof(v[0]), cudaMemcpyHostToDevice), "cudaMemcpy");
  return d;
}

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double largest(const std::vector<double>& v) { return v.empty() ? -1 : *std::max_element(v.begin(), v.end()); }

double mean(const std::vector<double>& v) {
  if (v.empty()) return -1;
  double sum = 0;
  for (double x : v) sum += x;
  return sum / static_cast<double>(v.size());
}

// A study's workload: causal, seed 1, pages of 64 scattered, the given cache format.
testing::WorkloadConfig study_config(const std::vector<int32_t>& seqlens, int h_q, int s_q, KvCacheFormat format) {
  testing::WorkloadConfig c;
  c.batch = static_cast<int>(seqlens.size());
  c.seqlens = seqlens;
  c.h_q = h_q;
  c.s_q = s_q;
  c.causal = true;
  c.seed = 1;
  c.kv_format = format;
  return c;
}

// One workload's buffers on the GPU, its schedule and decode arguments, and the median time of a call (three
// warm-up calls, then ten stream launches, no graph): what every study runs before its traced call.
struct PreparedCall {
  testing::Workload w;
  testing::DecodeBuffers b;
  DecodeArgs args;
  int parts = 0;  // num_sm_parts
  double us_per_call = 0;

  explicit PreparedCall(const testing::WorkloadConfig& c) : w(testing::make_workload(c)) {
    const Device dev{DeviceType::kCUDA, 0};
    b.q = upload(w.q);
    b.k_cache = upload(w.k_cache);
    b.block_table = upload(w.block_table);
    b.seqlens = upload(w.seqlens);
    if (w.uses_descale_q()) b.descale_q = upload(std::vector<float>{w.descale_q});
    if (w.uses_descale_k()) b.descale_k = upload(std::vector<float>{w.descale_k});
    parts = testing::decode_parts(w, cuda_device_info(0).sm_count);
    check(cudaMalloc(&b.metadata, parts * 32), "cudaMalloc");
    check(cudaMalloc(&b.num_splits, (c.batch + 1) * 4), "cudaMalloc");
    check(cudaMalloc(&b.out, w.out_elems() * 2), "cudaMalloc");
    check(cudaMalloc(&b.lse, w.lse_elems() * 4), "cudaMalloc");
    check(cudaMalloc(&b.workspace, testing::decode_workspace(w, parts) + 256), "cudaMalloc");
    get_mla_metadata(testing::schedule_args(w, dev, b, parts, nullptr));
    args = testing::decode_args(w, dev, b, parts, Backend::kSM90, nullptr);
    for (int i = 0; i < 3; ++i) mla_decode(args);
    cudaEvent_t e0, e1;
    check(cudaEventCreate(&e0), "event");
    check(cudaEventCreate(&e1), "event");
    check(cudaEventRecord(e0), "event");
    for (int i = 0; i < 10; ++i) mla_decode(args);
    check(cudaEventRecord(e1), "event");
    check(cudaEventSynchronize(e1), "event");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, e0, e1), "event");
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    us_per_call = ms * 1e3 / 10;
  }
  PreparedCall(const PreparedCall&) = delete;
  PreparedCall& operator=(const PreparedCall&) = delete;
  ~PreparedCall() {
    for (void* ptr : {b.q, b.k_cache, b.block_table, b.seqlens, b.metadata, b.num_splits, b.out, b.lse, b.workspace,
                      b.descale_q, b.descale_k}) {
      cudaFree(ptr);  // nullptr is a no-op
    }
  }
};

// The dense kernel's per-CTA trace of the last launch (kernel.cuh's g_trace) for the grid's first `ctas` CTAs (at
// most kTraceCtas), and the earliest entry among them (~0 when none entered).
struct CtaTrace {
  std::vector<unsigned long long> t;
  int ctas;
  unsigned long long first = ~0ull;
  explicit CtaTrace(int grid_ctas)
      : t(static_cast<size_t>(kTraceCtas) * kTraceSlots), ctas(std::min(grid_ctas, kTraceCtas)) {
    check(cudaMemcpy(t.data(), sm90::dense::g_trace_buffer, t.size() * sizeof(t[0]), cudaMemcpyDeviceToHost),
          "cudaMemcpy");
    for (int cta = 0; cta < ctas; ++cta) {
      if (at(cta, kSlotEntry) != 0) first = std::min(first, at(cta, kSlotEntry));
    }
  }
  unsigned long long at(int cta, int slot) const { return t[static_cast<size_t>(cta) * kTraceSlots + slot]; }
  // The CTA's last block stamped one by one (block j at kSlotBlock + j, j < kTraceBlocks).
  int last_traced(int cta) const {
    int j = 0;
    while (j + 1 < kTraceBlocks && at(cta, kSlotBlock + j + 1) != 0) ++j;
    return j;
  }
  // The stamp of the CTA's last block: kSlotLastBlock's when a block past the traced ones ran.
  unsigned long long last_block(int cta) const {
    return at(cta, kSlotLastBlock) != 0 ? at(cta, kSlotLastBlock) : at(cta, kSlotBlock + last_traced(cta));
  }
};

// With FLASH_MLA_PHASES_DUMP=DIR (not empty), one line per CTA into DIR/NAME.tsv (NAME with spaces, tildes and
// slashes as '_'): its part (the grid is query-row tiles x KV heads x parts, the trace's CTA index x fastest), the
// part's pieces and blocks (from its metadata row as for_each_piece walks it, without its clamps: this run's
// schedules need none), then the CTA's trace stamps in microseconds after the first CTA's entry (-1 where not
// stamped): entry, first block, last block, last piece stored, exit. For studies of how a schedule's parts end (the
// ragged rows).
void dump_ctas(const char* name, const PreparedCall& call, const std::vector<int32_t>& seqlens, const CtaTrace& trace,
               int per_part) {
  const char* dir = std::getenv("FLASH_MLA_PHASES_DUMP");
  if (dir == nullptr || *dir == '\0') return;
  std::string base = name;
  std::replace_if(base.begin(), base.end(), [](char c) { return c == ' ' || c == '~' || c == '/'; }, '_');
  const std::string file = std::string(dir) + "/" + base + ".tsv";
  std::vector<int32_t> meta(static_cast<size_t>(call.parts) * kMetadataWords);
  check(cudaMemcpy(meta.data(), call.b.metadata, meta.size() * 4, cudaMemcpyDeviceToHost), "cudaMemcpy");
  auto at = [&](int cta, int slot) { return trace.at(cta, slot); };
  FILE* f = std::fopen(file.c_str(), "w");
  if (f == nullptr) throw std::runtime_error("cannot write " + file + ": " + std::strerror(errno));
  std::fprintf(f, "cta\tpart\tpieces\tblocks\tentry\tfirst_block\tlast_block\tstored\texit\n");
  auto us = [&](unsigned long long ns) { return ns == 0 ? -1.0 : static_cast<double>(ns - trace.first) * 1e-3; };
  for (int cta = 0; cta < trace.ctas && cta / per_part < call.parts; ++cta) {
    const int part = cta / per_part;
    const int32_t* row = meta.data() + static_cast<size_t>(part) * kMetadataWords;
    const int pieces = std::max(std::min(row[2], static_cast<int>(seqlens.size()) - 1) - row[0] + 1, 0);
    const long long blocks = row[detail::kPartBlocksWord];  // the schedule's count (schedule_part_blocks)
    const unsigned long long last_k = trace.last_block(cta);
    unsigned long long stored = 0;
    for (int i = 0; i <= kTracePieces; ++i) stored = std::max(stored, at(cta, kSlotPieceStored + i));
    std::fprintf(f, "%d\t%d\t%d\t%lld\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\n", cta, part, pieces, blocks,
                 us(at(cta, kSlotEntry)), us(at(cta, kSlotBlock)), us(last_k), us(stored), us(at(cta, kSlotExit)));
  }
  if (std::fclose(f) != 0) throw std::runtime_error("cannot write " + file + ": " + std::strerror(errno));
}

// One call's per-CTA timeline from the trace slots (all CTAs of the grid up to kTraceCtas).
void print_cta_timeline(const CtaTrace& trace) {
  const int ctas = trace.ctas;
  const unsigned long long first = trace.first;
  auto at = [&](int cta, int slot) { return trace.at(cta, slot); };
  if (first == ~0ull) return;
  unsigned long long last = 0;
  for (int cta = 0; cta < ctas; ++cta) {
    if (at(cta, kSlotEntry) != 0) last = std::max(last, at(cta, kSlotExit));
  }
  auto us = [&](unsigned long long ns) { return static_cast<double>(ns - first) * 1e-3; };
  std::vector<double> entry, q_ready, first_k, last_k, stored, exit, interval, change, tail, consumer_piece_read,
      producer_piece_read, issued, producer_start, page_read, second_issued, q_issued, epilogue, restart, across,
      next_issued, staged_read, next_q_issued, next_q_landed, next_q_ready;
  std::vector<double> epilogue_steps[kEpilogueSlots];  // the first piece's, after its last traced block
  for (int cta = 0; cta < ctas; ++cta) {
    if (at(cta, kSlotEntry) == 0 || at(cta, kSlotBlock) == 0) continue;  // an empty part: no block
    entry.push_back(us(at(cta, kSlotEntry)));
    q_ready.push_back(us(at(cta, kSlotQReady)));
    // The prologue stamps some builds or paths never write (the gather producer's, say).
    auto stamped = [&](std::vector<double>& into, int slot) {
      if (at(cta, slot) != 0) into.push_back(us(at(cta, slot)));
    };
    stamped(consumer_piece_read, kSlotConsumerPiece);
    stamped(producer_piece_read, kSlotProducerPiece);
    stamped(issued, kSlotFirstIssued);
    stamped(producer_start, kSlotProducerStart);
    stamped(page_read, kSlotPageRead);
    stamped(second_issued, kSlotSecondIssued);
    stamped(q_issued, kSlotQIssued);
    first_k.push_back(us(at(cta, kSlotBlock)));
    exit.push_back(us(at(cta, kSlotExit)));
    const int j = trace.last_traced(cta);
    for (int k = 1; k < j; ++k) {
      interval.push_back(static_cast<double>(at(cta, kSlotBlock + k + 1) - at(cta, kSlotBlock + k)) * 1e-3);
    }
    last_k.push_back(us(trace.last_block(cta)));
    int pieces = 0;
    while (pieces < kTracePieces + 1 && at(cta, kSlotPieceStored + pieces) != 0) ++pieces;
    // The latest traced block stamp at or before `stamp` (0: none), and the earliest at or after it.
    auto block_before = [&](unsigned long long stamp) {
      unsigned long long before = 0;
      for (int k = 0; k <= j; ++k) {
        if (at(cta, kSlotBlock + k) <= stamp) before = std::max(before, at(cta, kSlotBlock + k));
      }
      return before;
    };
    auto block_after = [&](unsigned long long stamp) {
      unsigned long long after = ~0ull;
      for (int k = 0; k <= j; ++k) {
        if (at(cta, kSlotBlock + k) >= stamp) after = std::min(after, at(cta, kSlotBlock + k));
      }
      return after;
    };
    if (pieces > 0) {
      stored.push_back(us(at(cta, kSlotPieceStored + pieces - 1)));
      tail.push_back(stored.back() - last_k.back());  // the last block's K to the last piece stored
      const unsigned long long before = block_before(at(cta, kSlotPieceStored));  // the first piece's last block
      for (int e = 0; e < kEpilogueSlots && before != 0; ++e) {
        if (at(cta, kSlotEpilogue + e) > before) {
          epilogue_steps[e].push_back(static_cast<double>(at(cta, kSlotEpilogue + e) - before) * 1e-3);
        }
      }
    }
    // Piece i's store to piece i + 1's Q tile ready (the next Q load, and the barrier before it); slot
    // kSlotPieceQReady + 7 may hold a later piece's.
    // Around it, among the traced blocks: piece i's last block to its store (the epilogue), and the Q tile
    // ready to the next block's stamp (the restart); across: the last block to the next one.
    for (int i = 0; i + 1 < pieces && i + 1 < kTracePieces - 1; ++i) {
      const unsigned long long done = at(cta, kSlotPieceStored + i), ready = at(cta, kSlotPieceQReady + i + 1);
      if (ready <= done) continue;
      change.push_back(static_cast<double>(ready - done) * 1e-3);
      const unsigned long long before = block_before(done), after = block_after(ready);
      if (before == 0 || after == ~0ull) continue;
      epilogue.push_back(static_cast<double>(done - before) * 1e-3);
      // The producer's copies of the second piece's first block, from the first piece's last block.
      if (i == 0 && at(cta, kSlotNextPieceIssued) != 0) {
        const double issued_at = static_cast<double>(at(cta, kSlotNextPieceIssued));
        next_issued.push_back((issued_at - static_cast<double>(before)) * 1e-3);
      }
      restart.push_back(static_cast<double>(after - ready) * 1e-3);
      across.push_back(static_cast<double>(after - before) * 1e-3);
      // The last change's steps from the store: staged rows read, Q loads issued, landed, ready (barrier).
      if (i + 2 == pieces && at(cta, kSlotStagedRead) > done && at(cta, kSlotNextQLanded) > done) {
        staged_read.push_back(static_cast<double>(at(cta, kSlotStagedRead) - done) * 1e-3);
        next_q_issued.push_back(static_cast<double>(at(cta, kSlotNextQIssued) - done) * 1e-3);
        next_q_landed.push_back(static_cast<double>(at(cta, kSlotNextQLanded) - done) * 1e-3);
        next_q_ready.push_back(static_cast<double>(ready - done) * 1e-3);
      }
    }
  }
  std::printf("   CTAs (us after the first entry, median / max over %zu CTAs with blocks): entry %.2f / %.2f,"
              " Q ready %.2f / %.2f, first block %.2f / %.2f\n",
              entry.size(), median(entry), largest(entry), median(q_ready), largest(q_ready), median(first_k),
              largest(first_k));
  std::printf("   consumer 0: first piece read %.2f / %.2f, Q loads issued %.2f / %.2f; producer: start %.2f / %.2f,"
              " first piece read %.2f / %.2f, first page read %.2f / %.2f, block 0 issued %.2f / %.2f, block 1"
              " issued %.2f / %.2f\n",
              median(consumer_piece_read), largest(consumer_piece_read), median(q_issued), largest(q_issued),
              median(producer_start), largest(producer_start), median(producer_piece_read),
              largest(producer_piece_read), median(page_read), largest(page_read), median(issued), largest(issued),
              median(second_issued), largest(second_issued));
  // The seesaw stamps block a of a pair and block b at different points (kernel.cuh), so its intervals
  // alternate between two kinds: the mean is its time per block.
  std::printf("   block interval %.2f, mean %.2f (%zu), piece change %.2f / %.2f (%zu); last block %.2f / %.2f,"
              " last store %.2f / %.2f (tail %.2f / %.2f), exit %.2f / %.2f; kernel span %.2f\n",
              median(interval), mean(interval), interval.size(), median(change), largest(change), change.size(),
              median(last_k), largest(last_k), median(stored), largest(stored), median(tail), largest(tail),
              median(exit), largest(exit), static_cast<double>(last - first) * 1e-3);
  if (!across.empty()) {
    std::printf("   across a piece change (%zu, traced blocks): last block %.2f / %.2f to its store, Q ready %.2f /"
                " %.2f to the next block; last block to next block %.2f / %.2f; last block to the next piece's"
                " first copies issued %.2f / %.2f\n",
                across.size(), median(epilogue), largest(epilogue), median(restart), largest(restart),
                median(across), largest(across), median(next_issued), largest(next_issued));
  }
  std::printf("   the first piece's epilogue from its last block (median / max):");
  for (int e = 0; e < kEpilogueSlots; ++e) {
    if (!epilogue_steps[e].empty()) {
      std::printf(" %s %.2f / %.2f;", kEpilogueNames[e], median(epilogue_steps[e]), largest(epilogue_steps[e]));
    }
  }
  std::printf("\n");
  if (!staged_read.empty()) {
    std::printf("   the last piece change from its store (%zu): staged rows read %.2f / %.2f, Q loads issued %.2f /"
                " %.2f, landed (thread 0) %.2f / %.2f, Q ready %.2f / %.2f\n",
                staged_read.size(), median(staged_read), largest(staged_read), median(next_q_issued),
                largest(next_q_issued), median(next_q_landed), largest(next_q_landed), median(next_q_ready),
                largest(next_q_ready));
  }
}

void study_format(const char* name, const std::vector<int32_t>& seqlens, int h_q, int s_q, KvCacheFormat format) {
  const testing::WorkloadConfig c = study_config(seqlens, h_q, s_q, format);
  const PreparedCall call(c);
  const DecodeArgs& a = call.args;

  std::vector<long long> t(static_cast<size_t>(kPhaseCtas) * 2 * kPhaseIters * kPhaseEvents);
  check(cudaMemset(sm90::dense::g_phase_buffer, 0, t.size() * sizeof(t[0])), "cudaMemset");
  check(cudaMemset(sm90::dense::g_trace_buffer, 0, sizeof(unsigned long long) * kTraceCtas * kTraceSlots),
        "cudaMemset");
  mla_decode(a);
  check(cudaDeviceSynchronize(), "decode");
  check(cudaMemcpy(t.data(), sm90::dense::g_phase_buffer, t.size() * sizeof(t[0]), cudaMemcpyDeviceToHost),
        "cudaMemcpy");
  auto at = [&](int cta, int wg, int it, int ev) {
    return t[((static_cast<size_t>(cta) * 2 + wg) * kPhaseIters + it) * kPhaseEvents + ev];
  };
  std::vector<double> block;
  std::vector<std::vector<double>> since(2 * kPhaseEvents);
  for (int cta = 0; cta < kPhaseCtas; ++cta) {
    for (int it = 2; it + 1 < kPhaseIters; ++it) {
      const long long begin = at(cta, 0, it, 0), next = at(cta, 0, it + 1, 0);
      if (begin == 0 || next == 0) continue;
      block.push_back(static_cast<double>(next - begin));
      for (int wg = 0; wg < 2; ++wg) {
        for (int ev = 0; ev < kPhaseEvents; ++ev) {
          if (at(cta, wg, it, ev) != 0)
            since[wg * kPhaseEvents + ev].push_back(static_cast<double>(at(cta, wg, it, ev) - begin));
        }
      }
    }
  }
  std::printf("%-22s %8.1f us/call  block: median %5.0f cycles (%zu samples)\n", name, call.us_per_call,
              median(block), block.size());
  for (int wg = 0; wg < 2; ++wg) {
    std::printf("   consumer %d:", wg);
    for (int ev = 0; ev < kPhaseEvents; ++ev) {
      if (!since[wg * kPhaseEvents + ev].empty())
        std::printf("  %s %.0f", kEventNames[ev], median(since[wg * kPhaseEvents + ev]));
    }
    std::printf("\n");
  }
  // The launch grid (launch_decode): query-row tiles x KV heads x parts; the trace copied once for both.
  const int per_part = (c.s_q * c.h_q / c.h_kv + kBlockM - 1) / kBlockM * c.h_kv;
  const CtaTrace trace(per_part * call.parts);
  print_cta_timeline(trace);
  dump_ctas(name, call, seqlens, trace, per_part);
}

void study(const char* name, const std::vector<int32_t>& seqlens, int h_q, int s_q) {
  study_format(name, seqlens, h_q, s_q, KvCacheFormat::kDense);
}
// FP8 caches with more than 32 query rows per KV head, which the dense kernel runs (its FP8 producers dequantise
// into the 16-bit stages): how long consumer 0 waits for each block's K against the bf16 study of the same rows.
void study_fp8_tensor(const char* name, const std::vector<int32_t>& seqlens, int h_q, int s_q) {
  study_format(name, seqlens, h_q, s_q, KvCacheFormat::kFP8PerTensor);
}
void study_fp8_scale(const char* name, const std::vector<int32_t>& seqlens, int h_q, int s_q) {
  study_format(name, seqlens, h_q, s_q, KvCacheFormat::kFP8WithScale);
}

// The narrow FP8 kernel (per-tensor cache, <= 32 query rows): one call's per-block stamps, as medians over CTAs and
// blocks kPhaseStages .. kPhaseIters - 1 (cycles): each role's steps, the block period (the value warpgroup's
// P·V ends), and the stage's turnaround: freed by the value warpgroup (block it - 4's P·V done) -> the producer
// past its k_free wait -> copies issued -> the score warpgroup past k_full (when it waited, the landing).
void study_narrow(const char* name, const std::vector<int32_t>& seqlens, int h_q, int s_q) {
  const testing::WorkloadConfig c = study_config(seqlens, h_q, s_q, KvCacheFormat::kFP8PerTensor);
  const PreparedCall call(c);
  const DecodeArgs& a = call.args;
  if (narrow::g_phase_buffer == nullptr) throw std::runtime_error(std::string(name) + ": not the narrow kernel");
  std::vector<long long> t(static_cast<size_t>(narrow::kPhaseCtas) * narrow::kPhaseIters * narrow::kPhaseEvents);
  check(cudaMemset(narrow::g_phase_buffer, 0, t.size() * sizeof(t[0])), "cudaMemset");
  mla_decode(a);
  check(cudaDeviceSynchronize(), "decode");
  check(cudaMemcpy(t.data(), narrow::g_phase_buffer, t.size() * sizeof(t[0]), cudaMemcpyDeviceToHost),
        "cudaMemcpy");
  auto at = [&](int cta, int it, int ev) {
    return static_cast<double>(t[(static_cast<size_t>(cta) * narrow::kPhaseIters + it) * narrow::kPhaseEvents + ev]);
  };
  // Steps: {from, to} within a block; then the cross-block spans.
  struct Step {
    const char* what;
    int from, to;
  };
  const Step steps[] = {{"producer: free -> issued", narrow::kPhaseFree, narrow::kPhaseIssued},
                        {"score: stage wait", narrow::kPhaseScoreWait, narrow::kPhaseLanded},
                        {"score: Q·Kᵀ", narrow::kPhaseLanded, narrow::kPhaseScores},
                        {"score: softmax and vote", narrow::kPhaseScores, narrow::kPhaseVoted},
                        {"score: to p_full", narrow::kPhaseVoted, narrow::kPhasePFull},
                        {"score: own tile", narrow::kPhasePFull, narrow::kPhaseOwn},
                        {"value: Pᵀ wait", narrow::kPhaseValueWait, narrow::kPhaseValueGo},
                        {"value: P·V", narrow::kPhaseValueGo, narrow::kPhaseValueDone},
                        {"issued -> score past k_full", narrow::kPhaseIssued, narrow::kPhaseLanded},
                        {"p_full -> value past it", narrow::kPhasePFull, narrow::kPhaseValueGo}};
  constexpr int kSteps = sizeof(steps) / sizeof(steps[0]);
  std::vector<double> step[kSteps], period, freed_to_free, freed_to_landed, waited;
  for (int cta = 0; cta < narrow::kPhaseCtas; ++cta) {
    for (int it = narrow::kPhaseStages; it < narrow::kPhaseIters; ++it) {
      if (at(cta, it, narrow::kPhaseValueDone) == 0 || at(cta, it - 1, narrow::kPhaseValueDone) == 0) continue;
      period.push_back(at(cta, it, narrow::kPhaseValueDone) - at(cta, it - 1, narrow::kPhaseValueDone));
      for (int k = 0; k < kSteps; ++k) {
        if (at(cta, it, steps[k].from) != 0 && at(cta, it, steps[k].to) != 0) {
          step[k].push_back(at(cta, it, steps[k].to) - at(cta, it, steps[k].from));
        }
      }
      const double freed = at(cta, it - narrow::kPhaseStages, narrow::kPhaseValueDone);
      const double free_passed = at(cta, it, narrow::kPhaseFree), landed = at(cta, it, narrow::kPhaseLanded);
      if (freed != 0 && free_passed != 0) freed_to_free.push_back(free_passed - freed);
      if (freed != 0 && landed != 0) freed_to_landed.push_back(landed - freed);
      const double wait_began = at(cta, it, narrow::kPhaseScoreWait);
      if (wait_began != 0) waited.push_back(landed - wait_began > 100 ? 1 : 0);
    }
  }
  std::printf("%-22s %8.1f us/call (per-tensor FP8, narrow kernel)  block period: median %5.0f cycles (%zu)\n", name,
              call.us_per_call, median(period), period.size());
  for (int k = 0; k < kSteps; ++k) {
    if (!step[k].empty()) std::printf("   %-30s %6.0f  (mean %.0f)\n", steps[k].what, median(step[k]), mean(step[k]));
  }
  std::printf("   stage freed (P·V of it-4 done) -> producer past k_free %.0f, -> score past k_full %.0f; blocks whose"
              " score warpgroup waited > 100 cycles: %.0f %% of %zu\n",
              median(freed_to_free), median(freed_to_landed), waited.empty() ? 0.0 : 100 * mean(waited), waited.size());
}

}  // namespace

// Runs the studies whose names contain the first argument (all without one).
int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "";
  using Study = void (*)(const char*, const std::vector<int32_t>&, int, int);
  auto run = [&](const char* name, const std::vector<int32_t>& lens, int h_q, int s_q, Study what = study) {
    if (std::string(name).find(only) != std::string::npos) what(name, lens, h_q, s_q);
  };
  auto same = [](int batch, int len) { return std::vector<int32_t>(batch, len); };
  try {
    run("b128 8192 h128 s2", same(128, 8192), 128, 2);
    run("b128 4096 h128 s1", same(128, 4096), 128, 1);
    run("b128 8192 h16 s1", same(128, 8192), 16, 1);
    // 64 live rows in one tile (PERF.md's b=132 4096 s4 row: 0.85x of FlashMLA in session 21).
    run("b132 4096 h16 s4", same(132, 4096), 16, 4);
    // Short contexts, where a call's fixed time weighs most (b=128 1024 h128 runs at 0.76x of FlashMLA).
    run("b128 1024 h128 s1", same(128, 1024), 128, 1);
    run("b128 1024 h16 s1", same(128, 1024), 16, 1);
    run("b128 1024 h16 s4", same(128, 1024), 16, 4);  // 64 live rows, a piece change in most CTAs
    run("b64 512 h16 s2", same(64, 512), 16, 2);
    run("b256 512 h16 s1", same(256, 512), 16, 1);  // two pieces per CTA, one 16-row tile each
    // Small batches whose sequences are split (partial stores, then the combine).
    run("b64 256..1024 h16 s4", testing::uniform_random_seqlens(64, 256, 1024, 0), 16, 4);  // the bench's, seed 0
    run("b4 mixed h16 s4", {4641, 45118, 1730, 1696}, 16, 4);
    run("b16 1024 h16 s16", same(16, 1024), 16, 16);
    run("b1 65536 h16 s1", same(1, 65536), 16, 1);
    // FlashMLA's ragged rows (flash-mla-bench's lengths, seed 0) beside their uniform twins: where the cost line's
    // parts end (FLASH_MLA_PHASES_DUMP).
    for (int len : {4096, 16384}) {
      const std::string uniform = "b128 " + std::to_string(len) + " h32 s1";
      const std::string ragged = "b128 ~" + std::to_string(len) + " h32 s1 ragged";
      run(uniform.c_str(), same(128, len), 32, 1);
      run(ragged.c_str(), testing::make_seqlens(128, len, true, 1, 0), 32, 1);
    }
    // 64 rows on the dense kernel: bf16, then FP8 per tensor and with scale (issue 7's 64-row rows, session 39).
    run("d64 b128 4096 h32 s2 bf16", same(128, 4096), 32, 2);
    run("d64 b128 4096 h32 s2 fp8-tensor", same(128, 4096), 32, 2, study_fp8_tensor);
    run("d64 b128 4096 h32 s2 fp8-scale", same(128, 4096), 32, 2, study_fp8_scale);
    // The narrow FP8 kernel, per tensor: 16 rows (h16 s1) and 32 rows (h16 s2).
    run("fp8 b128 8192 h16 s1", same(128, 8192), 16, 1, study_narrow);
    run("fp8 b128 4096 h16 s1", same(128, 4096), 16, 1, study_narrow);
    run("fp8 b128 8192 h16 s2", same(128, 8192), 16, 2, study_narrow);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flash-mla-phases: %s\n", e.what());
    return 1;
  }
  return 0;
}
