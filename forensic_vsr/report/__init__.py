"""The court report: a PDF built with reportlab from the bundle's signed records and files.

The report is a pure function of the records it is given and of the bundle's files (stills PNGs
included): reportlab runs in invariant mode and every date printed comes from the records, so the
same bundle gives the same PDF bytes. `fvsr verify` uses that: it renders the report again from
the verified records and compares it with `report.pdf` byte for byte, which proves that every hash
printed in the report is the bundle's.

Modules: `content` (fixed texts and the records the report reads), `stills` (the PNG stills, made
at enhance time; the only one that imports OpenCV), `figures` (crops, overviews and the PSF cut
from the stills with Pillow at render time), `tables` (parameters with units, filtered metadata),
`render` (the PDF), `checks` (rendering again for `fvsr verify`, which imports neither torch nor
OpenCV)."""
