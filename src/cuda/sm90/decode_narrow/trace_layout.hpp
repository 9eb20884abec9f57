// The narrow FP8 kernel's per-block stamps (a -DFLASH_MLA_TRACE build only): the layout of its phase buffer,
// g_phase[kPhaseCtas][kPhaseIters][kPhaseEvents] of clock64() values (SM cycles), `it` the CTA's block count. Plain
// C++ so that the study program (cli/phase_timeline.cpp, flash-mla-phases) reads the same layout as kernel.cuh
// writes. Events: the producer passed the stage's k_free wait and issued its copies; the score warpgroup that takes
// the block began its k_full wait, passed it, has Sᵀ, passed the vote (or the slow path), arrived on p_full and
// added its own tile; the value warpgroup began its p_full wait, passed it (and k_full), and finished P·V (before
// freeing the stage). Thread 0 of each role writes.
#pragma once

namespace flash_mla::sm90::narrow {

enum PhaseEvent : int {
  kPhaseFree,
  kPhaseIssued,
  kPhaseScoreWait,
  kPhaseLanded,
  kPhaseScores,
  kPhaseVoted,
  kPhasePFull,
  kPhaseOwn,
  kPhaseValueWait,
  kPhaseValueGo,
  kPhaseValueDone,
  kPhaseEvents
};
inline constexpr int kPhaseCtas = 264;
inline constexpr int kPhaseIters = 32;
// The ring's stages (config.hpp's kStages, asserted in kernel.cuh): block it refills the stage block it - 4 freed.
inline constexpr int kPhaseStages = 4;

}  // namespace flash_mla::sm90::narrow
