"""The rules, without HTTP or sockets: callback routing, step derivation, wire formats, frames, signatures, tokens."""
