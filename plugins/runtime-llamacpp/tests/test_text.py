"""Incremental detokenization and stop strings."""

from __future__ import annotations

from kaito_runtime_llamacpp.text import IncrementalDetokenizer, StopMatcher


def test_multibyte_characters_split_across_tokens() -> None:
    detok = IncrementalDetokenizer()
    emoji = "🦙".encode()  # 4 bytes
    accent = "é".encode()  # 2 bytes
    assert detok.feed(b"caf" + accent[:1]) == "caf"
    assert detok.feed(accent[1:]) == "é"
    assert detok.feed(emoji[:2]) == ""
    assert detok.feed(emoji[2:3]) == ""
    assert detok.feed(emoji[3:] + b"!") == "🦙!"
    assert detok.feed(b"\xff") == "\ufffd"  # never valid UTF-8: replaced, not a crash
    assert detok.feed(accent[:1]) == ""
    assert detok.flush() == "\ufffd"  # a stream cut inside a character


def test_stop_string_split_across_pieces_is_held_back_then_cut() -> None:
    stops = StopMatcher(["<end>", "\n\n"])
    assert stops.feed("Hello <e") == ("Hello ", False)
    assert stops.feed("n") == ("", False)
    assert stops.feed("d> more") == ("", True)


def test_held_text_is_released_when_it_stops_matching() -> None:
    stops = StopMatcher(["STOP"])
    assert stops.feed("a ST") == ("a ", False)
    assert stops.feed("Ax") == ("STAx", False)
    assert stops.feed("ST") == ("", False)
    assert stops.flush() == "ST"


def test_no_stops_passes_through() -> None:
    stops = StopMatcher([])
    assert stops.feed("anything <e") == ("anything <e", False)
