"""Media: audio/video file I/O, the waveform -> log-mel front end, exact lengths, muxing."""
