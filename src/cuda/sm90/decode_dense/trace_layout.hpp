// The dense kernel's trace buffers (a -DFLASH_MLA_TRACE build only): the slots of its per-CTA timeline,
// g_trace[kTraceCtas][kTraceSlots] of %globaltimer nanoseconds, and the shape of its per-block phase buffer,
// g_phase[kPhaseCtas][2][kPhaseIters][kPhaseEvents] of clock64() values (consumer, block of the CTA, event at
// FLASH_MLA_PHASE_AT). Plain C++ so that the study program (cli/phase_timeline.cpp, flash-mla-phases) reads the
// layout kernel.cuh writes. Who writes each slot: kernel.cuh, above its trace().
#pragma once

namespace flash_mla::sm90::dense {

inline constexpr int kTraceCtas = 4096;
inline constexpr int kTraceBlocks = 40;  // blocks stamped one by one, then the latest past them
inline constexpr int kTracePieces = 8;   // pieces stamped one by one, then the latest past them

enum TraceSlot : int {
  kSlotEntry = 0,
  kSlotQReady = 1,                          // the first Q tile ready
  kSlotBlock = 2,                           // + j: consumer 0 has block j's K (j < kTraceBlocks)
  kSlotLastBlock = kSlotBlock + kTraceBlocks,  // the latest block past them
  kSlotFirstIssued = 43,                    // the producer: its first block's copies issued
  kSlotProducerPiece = 44,                  // the producer: its first piece read from the schedule
  kSlotPieceStored = 45,                    // + i: piece i stored (i < kTracePieces; + kTracePieces the latest past)
  kSlotPieceQReady = kSlotPieceStored + kTracePieces + 1,  // + i: piece i's Q tile ready (i < kTracePieces - 1;
                                                            // + kTracePieces - 1 the latest past them)
  kSlotConsumerPiece = 62,                  // consumer 0: its first piece read, before the Q tile's loads
  kSlotExit = 63,
  kSlotProducerStart = 64,
  kSlotPageRead = 65,                       // the producer: its first block's first page read
  kSlotSecondIssued = 66,                   // the producer: its second block's copies issued
  kSlotQIssued = 67,                        // consumer 0: the first Q tile's loads issued
  kSlotNextPieceIssued = 68,                // the producer: its second piece's first block's copies issued
  kSlotStagedRead = 69,                     // the last piece change: the staged rows read
  kSlotNextQIssued = 70,                    // the last piece change: the Q tile's loads issued
  kSlotNextQLanded = 71,                    // the last piece change: thread 0's Q loads landed
  kSlotEpilogue = 72,                       // the first piece's epilogue, kEpilogueSlots of them:
  kSlotLoopDone = kSlotEpilogue,            // + consumer: back from the block loop
  kSlotRowsStaged = 74,                     // consumer 0's rows written (store_final_staged)
  kSlotStaged = 75,                         // + consumer: the staging barrier passed
  kSlotCopiesIssued = 77,                   // consumer 1's bulk copies issued
  kSlotStoresIssued = 78,                   // + consumer: stores issued (store_output, store_partial_staged)
  kTraceSlots = 80
};
inline constexpr int kEpilogueSlots = kSlotStoresIssued + 2 - kSlotEpilogue;
// The numbered slots stay apart: changing kTraceBlocks or kTracePieces must move the ones after them.
static_assert(kSlotLastBlock < kSlotFirstIssued && kSlotPieceQReady + kTracePieces == kSlotConsumerPiece);
static_assert(kSlotEpilogue + kEpilogueSlots <= kTraceSlots);

inline constexpr int kPhaseCtas = 264;
inline constexpr int kPhaseIters = 24;
inline constexpr int kPhaseEvents = 16;

}  // namespace flash_mla::sm90::dense
