"""Continuous batching without the model: which sequences run, what each step decodes, who is preempted.

Pure bookkeeping over :class:`Sequence` values, so it can be tested without llama.cpp. The engine
(engine.py) owns the llama.cpp calls and asks this module what to do:

- :meth:`Scheduler.admit` moves waiting sequences into free seq_ids while the shared KV pool has cells
  for them (first come, first served: the head of the queue waits for cells, the rest behind it);
- :meth:`Scheduler.plan_step` builds one batch: the next token of every generating sequence first (so
  no sequence waits on a long prefill), then prompt tokens of newcomers, chunked to ``n_batch``;
- when llama.cpp finds no room for a batch, :meth:`Scheduler.undo_step` restores every sequence and
  :meth:`Scheduler.preempt` sends the sequence admitted last back to the head of the queue, to be
  recomputed from its prompt plus what it generated; after a preemption nothing is admitted until a
  sequence ends (re-admitting at once would only fill the pool again, for ever).

seq_ids are a min-heap: new sequences take the lowest free id, keeping the ids in use compact (with
per-sequence KV slices, llama.cpp attends over the span of streams from the lowest to the highest
seq_id in a batch), and every batch lists its sequences in ascending seq_id order.

The prompt-prefix cache: a sequence that ends leaves its tokens in its seq_id's KV cells
(:attr:`Scheduler.cached`). A newcomer takes the free seq_id whose cached tokens share the longest
prefix with its prompt and starts past them (the previous turns of a chat, a shared system prompt are
not computed again); the engine trims the rest (:attr:`Sequence.trim_from`). Cached cells count
against the pool: :meth:`Scheduler.evict_cached` hands them back, before anyone waits for cells or is
preempted, so a cache only ever saves work and never changes what runs. At least the last prompt
token is always decoded again: its logits pick the first new token.

Prefixes shared while they run: in one pool of cells (``kv_cells`` > 0, llama.cpp's unified KV cache) a
cell can belong to several sequences. A newcomer whose prompt shares more with a running sequence (its
*donor*: a system prompt many users send at once) than with any cached prefix waits for the donor to
have those tokens in the cache, then takes them (:meth:`Scheduler.take_shared`; the engine's
``llama_memory_seq_cp`` adds the newcomer to the donor's cells, copying nothing) and prefills only the
rest. Likewise a newcomer that shares only part of a cached prefix (another conversation's system
prompt) copies that part into a seq_id of its own instead of cutting the cache (:attr:`Sequence.copy_from`).
A donor's prefill stops at a follower's shared length, so the copy happens while every cell of the
prefix, those of sliding-window layers too, is still there. A follower whose donor ends, is preempted
or is cancelled first prefills everything itself.

LoRA adapters per request: each sequence carries the adapter set it runs under
(:attr:`Sequence.adapters`, hashable). One llama_decode applies one set, so :func:`split_by_adapters`
cuts a step's batch into one batch per set, the set the context already applies first (switching sets
costs llama.cpp a graph reservation). The prefix cache reuses a seq_id's cells only for a sequence under
the same set: KV computed under one adapter is not the KV of another.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from kaito_core.plugins import SamplingParams

#: Tokens a running donor must share beyond what the cache offers before a newcomer waits for it: a
#: shorter prefix is cheaper to compute in the newcomer's own prefill than to wait a step for.
MIN_SHARED = 32


@dataclass(eq=False)
class Sequence:
    """One generation as the scheduler sees it; ``work`` is the engine's own state for it."""

    prompt: list[int]  # tokens to prefill: the prompt, plus what was generated before a preemption
    params: SamplingParams
    prompt_len: int = 0  # tokens of the original prompt at the start of ``prompt``
    seq_id: int = -1
    n_past: int = 0  # tokens of this sequence in the KV cache
    prefilled: int = 0  # prompt tokens sent to the model
    next_token: int | None = None  # sampled, not yet decoded
    output_index: int = -1  # row of logits to sample in the current batch
    generated: list[int] = field(default_factory=list)
    cancelled: bool = False
    admitted: int = 0  # admission order: preemption takes the sequence admitted last
    reused: int = 0  # prompt tokens found in the prefix cache at admission
    trim_from: int = -1  # >= 0: the engine removes this seq_id's cached cells from here on
    adapters: Hashable = ()  # the adapter set it runs under (the engine's key; () for the base model)
    donor: Sequence | None = None  # a running sequence whose first ``shared`` KV cells this one takes
    shared: int = 0
    lender: Sequence | None = None  # the donor it took them from (they count once while it holds them)
    lender_admitted: int = 0  # the lender's admission then: a preempted lender has let go of its cells
    copy_from: int = -1  # >= 0: a cached seq_id whose first ``reused`` cells the engine copies at admission
    work: Any = None

    def __post_init__(self) -> None:
        if not self.prompt_len:
            self.prompt_len = len(self.prompt)

    def history(self) -> list[int]:
        """Every token of this sequence in position order: prompt, then what was generated past it."""
        return self.prompt + self.generated[len(self.prompt) - self.prompt_len :]

    def kv_tokens(self) -> list[int]:
        """The tokens this sequence has in the KV cache, in position order."""
        return self.history()[: self.n_past]

    def borrowed(self) -> int:
        """Its first cells that a running donor holds too (or will, for a follower still waiting)."""
        if self.donor is not None:
            return self.shared
        lender = self.lender
        if lender is not None and lender.seq_id >= 0 and lender.admitted == self.lender_admitted:
            return self.shared
        return 0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(frozen=True)
class Entry:
    """One token of a batch: which sequence, at which position, and whether its logits are wanted."""

    token: int
    seq: Sequence
    pos: int
    logits: bool


class Scheduler:
    def __init__(self, max_batch: int, kv_cells: int = 0, prefix_cache: bool = True) -> None:
        #: cells of the shared KV pool; 0: each sequence has a slice of its own (never waits for cells)
        self.kv_cells = kv_cells
        self.prefix_cache = prefix_cache
        #: free seq_id -> the tokens its KV cells still hold (what a finished sequence left)
        self.cached: dict[int, list[int]] = {}
        #: free seq_id -> the adapter set its cached cells were computed under
        self.cached_adapters: dict[int, Hashable] = {}
        self.reused_tokens = 0  # prompt tokens taken from the cache instead of computed
        #: newcomers may take the cells of a running sequence's prefix (one pool: a cell has many owners)
        self.share_running = prefix_cache and kv_cells > 0
        self.shared_tokens = 0  # prompt tokens taken from a running sequence's cells instead of computed
        self.pending: deque[Sequence] = deque()
        self.active: list[Sequence] = []
        self.free_ids: list[int] = list(range(max_batch))
        self.preemptions = 0
        self._admissions = 0
        self._hold_until_retire = False
        self._before: dict[Sequence, tuple[int, int, int | None]] = {}
        #: seq_ids whose cached cells the engine must free (evicted prefixes), drained by the engine
        self.evictions: list[int] = []

    def submit(self, seq: Sequence) -> None:
        self.pending.append(seq)

    def drop_cancelled_pending(self) -> list[Sequence]:
        """Forget waiters whose clients went away; returns them (a preempted one holds a sampler)."""
        dropped = [seq for seq in self.pending if seq.cancelled]
        if dropped:
            self.pending = deque(seq for seq in self.pending if not seq.cancelled)
        return dropped

    def cells_committed(self) -> int:
        """Cells the running sequences hold after their next step: what is cached, the rest of their
        prompts, and the token each decodes next; cells shared with a running donor count once."""
        held = (s.n_past + len(s.prompt) - s.prefilled + (s.next_token is not None) for s in self.active)
        return sum(held) - sum(s.borrowed() for s in self.active)

    def cells_cached(self) -> int:
        return sum(len(tokens) for tokens in self.cached.values())

    def evict_cached(self, keep: int = -1) -> list[int]:
        """Forget every cached prefix but ``keep``'s; returns the seq_ids whose cells the engine frees."""
        evicted = [seq_id for seq_id in self.cached if seq_id != keep]
        for seq_id in evicted:
            del self.cached[seq_id]
            self.cached_adapters.pop(seq_id, None)
        return evicted

    def _best_donor(self, seq: Sequence) -> tuple[Sequence | None, int]:
        """The running sequence sharing the longest prefix with ``seq``'s prompt (under the same adapter
        set), and that length (at most the prompt but its last token)."""
        best: Sequence | None = None
        best_len = 0
        if self.share_running:
            for other in self.active:
                if other.cancelled or other.adapters != seq.adapters:
                    continue
                length = min(common_prefix(other.history(), seq.prompt), len(seq.prompt) - 1)
                further = best is not None and other.n_past > best.n_past  # on a tie: the one further on
                if length > best_len or (length == best_len and further):
                    best, best_len = other, length
        return best, best_len

    def _best_cached(self, seq: Sequence) -> tuple[int, int]:
        """The free seq_id caching the longest prefix of ``seq``'s prompt (the lowest on a tie; -1 for
        none) and that length."""
        best, best_len = -1, 0
        if self.prefix_cache:
            for seq_id in self.free_ids:
                cached = self.cached.get(seq_id)
                if cached and self.cached_adapters.get(seq_id, ()) == seq.adapters:
                    length = common_prefix(cached, seq.prompt)
                    if length > best_len or (length == best_len and best >= 0 and seq_id < best):
                        best, best_len = seq_id, length
        return best, best_len

    def _donor_for(self, seq: Sequence) -> tuple[Sequence | None, int]:
        """The running donor ``seq`` will take its prefix from, and how many tokens: one sharing at least
        :data:`MIN_SHARED` more than the best cache does (None, 0 for none)."""
        donor, shared = self._best_donor(seq)
        if donor is None:
            return None, 0
        cached = min(self._best_cached(seq)[1], len(seq.prompt) - 1)
        return (donor, shared) if shared >= cached + MIN_SHARED else (None, 0)

    def _take_id(self, seq: Sequence, donor: Sequence | None, shared: int) -> int:
        """The free seq_id for ``seq``: the one caching the longest prefix of its prompt, else the lowest
        that caches nothing. In one pool, where cells can be shared, it may instead take the prefix
        without the id: from its running ``donor`` (:meth:`_donor_for`), or copied from a cache that
        holds :data:`MIN_SHARED` tokens more than it shares (another conversation, which may come back
        for them)."""
        best, best_len = self._best_cached(seq)
        reuse = min(best_len, len(seq.prompt) - 1)
        uncached = [seq_id for seq_id in self.free_ids if seq_id not in self.cached]
        if donor is not None:
            seq.donor, seq.shared = donor, shared
            best, reuse = -1, 0
        elif best >= 0 and self.share_running and uncached and len(self.cached[best]) >= reuse + MIN_SHARED:
            seq.copy_from, best = best, -1
        if best >= 0:
            seq_id = best
        else:  # the lowest id that caches nothing: a cache is overwritten only when every free id holds one
            seq_id = min(uncached) if uncached else self.free_ids[0]
            reuse = reuse if seq.copy_from >= 0 else 0
        self.free_ids.remove(seq_id)
        heapq.heapify(self.free_ids)
        self.cached_adapters.pop(seq_id, None)
        if seq_id in self.cached and len(self.cached.pop(seq_id)) > reuse:
            seq.trim_from = reuse  # with a donor: 0, so its cells are only the donor's copied ones
        seq.reused = reuse
        seq.n_past = seq.prefilled = reuse
        self.reused_tokens += reuse
        return seq_id

    def admit(self) -> list[Sequence]:
        """Move waiting sequences into free seq_ids, in order, while the pool has cells for their prompts
        (an idle engine always admits one: a prompt is shorter than the context, which the pool holds).
        Cached prefixes give their cells back first when the pool is short (:attr:`evictions`).
        Returns the sequences admitted."""
        admitted = []
        while self.pending and self.free_ids:
            seq = self.pending[0]
            donor, shared = self._donor_for(seq)
            if self.kv_cells and self.active:
                if self._hold_until_retire:
                    break
                if self.cells_committed() + len(seq.prompt) - shared + 1 > self.kv_cells:
                    break
            self.pending.popleft()
            seq.seq_id = self._take_id(seq, donor, shared)
            self._admissions += 1
            seq.admitted = self._admissions
            self.active.append(seq)
            admitted.append(seq)
            if self.kv_cells and self.cells_committed() + self.cells_cached() > self.kv_cells:
                self.evictions.extend(self.evict_cached())  # room first: a cache never makes anyone wait
        return admitted

    def take_shared(self) -> list[tuple[Sequence, Sequence]]:
        """(donor, follower) pairs whose donor now has the shared prefix in the cache: each follower
        counts it as its own (the engine copies cells [0, ``shared``) from the donor's seq_id to the
        follower's) and prefills the rest. Followers whose donor left stop waiting and prefill it all.
        In admission order, so a follower of a follower takes its cells the moment its donor has them."""
        ready: list[tuple[Sequence, Sequence]] = []
        for seq in sorted(self.active, key=lambda s: s.admitted):
            donor = seq.donor
            if donor is None:
                continue
            if donor.seq_id < 0 or donor.cancelled or donor not in self.active:
                seq.donor, seq.shared = None, 0
            elif donor.n_past >= seq.shared:
                seq.donor, seq.lender, seq.lender_admitted = None, donor, donor.admitted
                seq.n_past = seq.prefilled = seq.shared
                self.shared_tokens += seq.shared
                ready.append((donor, seq))
        return ready

    def unshare(self, seq: Sequence) -> None:
        """The engine could not use the donor's cells (a sliding window moved past them): start over."""
        self.shared_tokens -= seq.shared
        seq.n_past = seq.prefilled = seq.shared = 0
        seq.lender = None

    def plan_step(self, n_batch: int) -> tuple[list[Entry], list[Sequence]]:
        """The next batch, and the sequences it carries (each once)."""
        self._before = {seq: (seq.n_past, seq.prefilled, seq.next_token) for seq in self.active}
        entries: list[Entry] = []
        carried: list[Sequence] = []

        def add(token: int, seq: Sequence, logits: bool) -> None:
            if logits:
                seq.output_index = len(entries)
            entries.append(Entry(token, seq, seq.n_past, logits))
            seq.n_past += 1

        self.active.sort(key=lambda s: s.seq_id)
        for seq in self.active:
            if seq.next_token is not None:
                add(seq.next_token, seq, True)
                seq.next_token = None
                carried.append(seq)
        for seq in self.active:
            room = n_batch - len(entries)
            if room <= 0:
                break
            remaining = len(seq.prompt) - seq.prefilled
            if remaining <= 0 or seq in carried or seq.donor is not None:  # a follower waits for its donor
                continue
            # stop where a waiting follower's share ends: it takes the cells before the next step moves on
            cuts = [f.shared for f in self.active if f.donor is seq and f.shared > seq.prefilled]
            take = min(room, remaining, *(cut - seq.prefilled for cut in cuts))
            for i in range(seq.prefilled, seq.prefilled + take):
                add(seq.prompt[i], seq, i == len(seq.prompt) - 1)
            seq.prefilled += take
            carried.append(seq)
        return entries, carried

    def undo_step(self, only: list[Sequence] | None = None) -> None:
        """The model could not take the batch: every sequence (or those of ``only``: the batches of the
        step not decoded) is as it was before plan_step."""
        for seq, (n_past, prefilled, next_token) in self._before.items():
            if only is not None and seq not in only:
                continue
            seq.n_past, seq.prefilled, seq.next_token = n_past, prefilled, next_token
            seq.output_index = -1

    def preemption_victim(self) -> Sequence | None:
        """The sequence to preempt when the pool is full, or None when only one runs (it cannot fit)."""
        if len(self.active) < 2:
            return None
        return max(self.active, key=lambda s: s.admitted)

    def preempt(self, seq: Sequence) -> int:
        """Send a running sequence back to the head of the queue, to be recomputed from its prompt plus
        the tokens it generated (the last one, sampled but not yet decoded, included), so it resumes
        exactly where it was. Returns the seq_id whose cells the engine must free."""
        seq_id = self._release(seq)
        seq.reused = 0
        seq.donor, seq.lender, seq.shared, seq.copy_from = None, None, 0, -1
        seq.prompt = seq.prompt[: seq.prompt_len] + seq.generated
        seq.prefilled = 0
        seq.n_past = 0
        seq.next_token = None
        seq.output_index = -1
        self.pending.appendleft(seq)
        self._hold_until_retire = True
        self.preemptions += 1
        return seq_id

    def retire(self, seq: Sequence, keep: bool = False) -> int:
        """A sequence ended; returns its seq_id. With ``keep`` (and the prefix cache on) its KV cells
        stay as that seq_id's cached prefix; otherwise the engine must free them."""
        self._hold_until_retire = False
        tokens = seq.kv_tokens() if keep and self.prefix_cache else []
        seq_id = self._release(seq)
        if tokens:
            self.cached[seq_id] = tokens
            self.cached_adapters[seq_id] = seq.adapters
        return seq_id

    def _release(self, seq: Sequence) -> int:
        seq_id = seq.seq_id
        self.active.remove(seq)
        heapq.heappush(self.free_ids, seq_id)
        seq.seq_id = -1
        return seq_id


@dataclass
class Group:
    """The part of a step's batch that runs under one adapter set: one llama_decode."""

    adapters: Hashable
    entries: list[Entry]
    carried: list[Sequence]


def split_by_adapters(entries: list[Entry], carried: list[Sequence], current: Hashable) -> list[Group]:
    """Cut a step's batch into one batch per adapter set, ``current`` (what the context applies now)
    first and the others by their lowest seq_id; each keeps ascending seq_id order, and each sequence's
    ``output_index`` becomes its row in its own batch."""
    groups: dict[Hashable, Group] = {}
    for seq in carried:
        groups.setdefault(seq.adapters, Group(seq.adapters, [], [])).carried.append(seq)
    for entry in entries:
        group = groups[entry.seq.adapters]
        if entry.logits:
            entry.seq.output_index = len(group.entries)
        group.entries.append(entry)
    ordered = sorted(groups.values(), key=lambda g: (g.adapters != current, min(s.seq_id for s in g.carried)))
    return ordered
