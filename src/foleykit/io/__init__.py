"""Media input/output: audio, image and video decode/encode, atomic writes, sidecars, input limits."""
