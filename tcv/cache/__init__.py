"""The Triton cache on disk: kernel keys, metadata, scanning, layouts, relocation."""
