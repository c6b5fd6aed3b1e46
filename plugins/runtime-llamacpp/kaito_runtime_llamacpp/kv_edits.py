"""The KV memory edits the scheduler decided, made on the llama.cpp context.

scheduler.py plans in plain Python which cells each sequence keeps, takes, copies or gives back;
these functions carry those plans out with ``llama_memory_seq_*`` on the decode thread, and hand the
plan back to the scheduler where llama.cpp cannot follow it (a sliding window that lost the cells a
resumed sequence needs, a partial removal refused).
"""

from __future__ import annotations

from kaito_runtime_llamacpp.loading import Loaded
from kaito_runtime_llamacpp.scheduler import Scheduler
from kaito_runtime_llamacpp.scheduler import Sequence as Seq


def apply_admissions(loaded: Loaded, scheduler: Scheduler, admitted: list[Seq]) -> None:
    """Copy the cached prefixes newcomers take without their seq_id, then free the KV cells the
    scheduler let go of: evicted prefixes, and what a newcomer's seq_id cached beyond the prefix it
    shares."""
    import llama_cpp.llama_cpp as L

    mem = loaded.mem
    for seq in admitted:  # first: a prefix copied out of a cache before that cache may be evicted
        if seq.copy_from >= 0:
            L.llama_memory_seq_cp(mem, seq.copy_from, seq.seq_id, 0, seq.reused)
            seq.copy_from = -1
    for seq_id in scheduler.evictions:
        L.llama_memory_seq_rm(mem, seq_id, -1, -1)
    scheduler.evictions.clear()
    n_swa = int(L.llama_model_n_swa(loaded.model))
    for seq in admitted:
        trim, seq.trim_from = seq.trim_from, -1
        # Sliding-window layers keep only the window of a sequence's last positions: resuming at
        # `reused` needs the window before it, which may be gone (llama-server's test, the same).
        if (
            seq.reused
            and n_swa > 0
            and L.llama_memory_seq_pos_min(mem, seq.seq_id) > max(0, seq.reused - n_swa)
        ):
            trim = 0
        if trim == 0 and seq.reused:
            scheduler.reused_tokens -= seq.reused
            seq.reused = seq.n_past = seq.prefilled = 0
        if trim >= 0 and not L.llama_memory_seq_rm(mem, seq.seq_id, trim, -1):
            L.llama_memory_seq_rm(mem, seq.seq_id, -1, -1)  # a partial removal refused: start over
            scheduler.reused_tokens -= seq.reused
            seq.reused = seq.n_past = seq.prefilled = 0


def share_prefixes(loaded: Loaded, scheduler: Scheduler) -> None:
    """Give each follower whose donor has their shared prefix cached those cells (scheduler.py): the
    follower's seq_id joins the donor's cells, nothing is computed or copied."""
    import llama_cpp.llama_cpp as L

    mem, n_swa = loaded.mem, int(L.llama_model_n_swa(loaded.model))
    for donor, seq in scheduler.take_shared():
        L.llama_memory_seq_cp(mem, donor.seq_id, seq.seq_id, 0, seq.shared)
        # the window before the shared length must still be there to resume after it
        if n_swa > 0 and L.llama_memory_seq_pos_min(mem, seq.seq_id) > max(0, seq.shared - n_swa):
            L.llama_memory_seq_rm(mem, seq.seq_id, -1, -1)
            scheduler.unshare(seq)
