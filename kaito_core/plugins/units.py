"""Sizes: every memory or file size in the contracts is in bytes; these help write them."""

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
