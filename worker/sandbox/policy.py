"""renderq's ImageMagick policy, made from the settings, and the proof that it is in force.

The policy denies every coder, module, delegate and filter, then allows only the formats
renderq reads and writes. Its image limits are renderq's own input limits, so ImageMagick
itself refuses a frame the header probe never saw (a hidden GIF frame, a chain of BMPs) once
it passes them. Inside the sandbox this file is the only `policy.xml` ImageMagick can find:
the host's `/etc/ImageMagick-6` is not mounted there.

The zygote then tries every family in `REFUSED_CODERS` (see `zygote.prove_policy`) and the
worker refuses to start unless ImageMagick refused each one by policy, so a host whose build
or policy differs stops the worker instead of running with a hole.
"""

from __future__ import annotations

from typing import Final

from renderq.settings import Settings

POLICY_DIR: Final = "/etc/ImageMagick-6"

# The formats renderq accepts and writes, and PAM for its own 8-bit round trip. AVIF's coder
# lives in the HEIC module (libheif), which ImageMagick opens under both names; that module's
# HEIC coder stays refused, since the header probe never vets HEIC.
_ALLOWED_CODERS: Final = "{PNG,JPEG,JPG,GIF,WEBP,BMP,BMP3,TIFF,TIF,AVIF,PAM}"
_ALLOWED_MODULES: Final = (
    "{PNG,JPEG,JPG,GIF,WEBP,BMP,BMP3,TIFF,TIF,AVIF,HEIC,PAM,PNM,"
    "png,jpeg,jpg,gif,webp,bmp,bmp3,tiff,tif,avif,heic,pam,pnm}"
)

_TEMPLATE: Final = """<?xml version="1.0" encoding="UTF-8"?>
<!-- renderq's ImageMagick policy, generated from its settings. The last matching rule wins. -->
<policymap>
  <policy domain="resource" name="thread" value="1"/>
  <policy domain="resource" name="memory" value="{memory}MiB"/>
  <policy domain="resource" name="map" value="{map}MiB"/>
  <policy domain="resource" name="disk" value="{disk}MiB"/>
  <policy domain="resource" name="area" value="{area}"/>
  <policy domain="resource" name="width" value="{width}"/>
  <policy domain="resource" name="height" value="{height}"/>
  <policy domain="resource" name="list-length" value="{list_length}"/>
  <policy domain="delegate" rights="none" pattern="*"/>
  <policy domain="filter" rights="none" pattern="*"/>
  <policy domain="path" rights="none" pattern="@*"/>
  <policy domain="coder" rights="none" pattern="*"/>
  <policy domain="coder" rights="read|write" pattern="{coders}"/>
  <policy domain="module" rights="none" pattern="*"/>
  <policy domain="module" rights="read|write" pattern="{modules}"/>
</policymap>
"""

# No `time` resource: ImageMagick 6 counts it from the first pixel cache of the process (the
# zygote's warm-up) and exits when it runs out, which would kill every later child. The
# worker's wall-clock timeout and each child's RLIMIT_CPU bound a render instead.

# ImageMagick 6 counts the image being read against list-length before it is added, so 2
# is the smallest value that reads one image: a second frame is refused.
LIST_LENGTH: Final = 2

# A blob for each coder family ImageMagick exploits have used, read with an explicit format:
# the policy must refuse every one. `@file` indirection is tried by name besides.
_MVG: Final = b"push graphic-context\nviewbox 0 0 1 1\npop graphic-context\n"
_SVG: Final = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'
_MSL: Final = b'<?xml version="1.0"?><image><read filename="x.png"/></image>'
_PS: Final = b"%!PS\n1 1 moveto showpage\n"
_PDF: Final = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
_NAME: Final = b"/etc/ld.so.cache"  # a file that exists in the sandbox
REFUSED_CODERS: Final[dict[str, bytes]] = {
    "mvg": _MVG,
    "svg": _SVG,
    "msvg": _SVG,
    "rsvg": _SVG,
    "msl": _MSL,
    "text": _NAME,
    "txt": _NAME,
    "label": b"renderq",
    "caption": b"renderq",
    "pango": b"renderq",
    "ephemeral": _NAME,
    "url": b"http://127.0.0.1:9/x.png",
    "http": b"//127.0.0.1:9/x.png",
    "https": b"//127.0.0.1:9/x.png",
    "ftp": b"//127.0.0.1:9/x.png",
    "inline": b"data:image/png;base64,iVBORw0KGgo=",
    "ps": _PS,
    "eps": _PS,
    "epdf": _PDF,
    "pdf": _PDF,
    "xps": _PDF,
    "pcl": _PS,
    "mpr": b"renderq",
    "xc": b"red",
    "fd": b"0",
    "tmp": _NAME,
    "vid": _NAME,
    "magick": b"rose",
}
# HEIC, whose coder shares the module AVIF needs, is not tried here: the attempt would load
# that module (libheif and its codecs) into the zygote, and so into every child. A child
# tries it instead (tests/test_isolation.py).


def policy_xml(settings: Settings) -> str:
    """The policy for `settings`: resource limits follow the render and input limits."""
    return _TEMPLATE.format(
        memory=max(16, settings.render_memory_mb // 4),
        map=max(32, settings.render_memory_mb // 2),
        disk=settings.render_file_mb,
        area=settings.max_input_pixels,
        width=settings.max_input_width,
        height=settings.max_input_height,
        list_length=LIST_LENGTH,
        coders=_ALLOWED_CODERS,
        modules=_ALLOWED_MODULES,
    )
