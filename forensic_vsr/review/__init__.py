"""`fvsr review`: a local, token-guarded web page to look at a bundle frame by frame (evidence
and enhanced side by side or as a wipe, a pixel-exact magnifier, the S, R and interval maps as
overlays), watch `fvsr verify`'s checks complete, and save signed review records (stills,
regions, annotations) into review/. The enhanced pixels are never changed."""
