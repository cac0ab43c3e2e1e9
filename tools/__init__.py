"""Command-line tools (absl flags); installed as the `gtsrb-*` console scripts."""
