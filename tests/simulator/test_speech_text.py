"""Text to speak is only ever spoken: espeak-ng never parses it as an option (``-f FILE`` reads a file)."""

from __future__ import annotations

import numpy as np

from drivers.audiofile import synthesize


def test_a_text_that_looks_like_an_option_is_spoken_not_obeyed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("zebra xylophone quartz. " * 30)
    text = f"-f{secret}"
    spoken = synthesize(text)
    # espeak-ng skips leading blanks and never takes " -f..." for an option: that is the text
    # itself, spoken; reading the file instead would sound like the file's content
    literal = synthesize(" " + text)
    assert len(spoken) == len(literal)
    assert np.abs(spoken.astype(int) - literal).max() <= 8  # sox's dither differs by a few counts
    assert len(spoken) < len(synthesize(secret.read_text())) / 2
