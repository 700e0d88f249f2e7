"""Blinding: one canvas, the pixels only, no metadata of the source file."""

import io
from types import SimpleNamespace

from PIL import Image, PngImagePlugin

from harness.app import blind


def source_png(size, colour=(255, 0, 0), mode="RGB"):
    img = Image.new(mode, size, colour)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "model: secret-model-xl")
    info.add_itxt("Description", "made by secret-model-xl")
    exif = Image.Exif()
    exif[0x0131] = "secret-model-xl"
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info, exif=exif, icc_profile=b"fake-icc-secret-model-xl")
    raw = buf.getvalue()
    # A C2PA manifest travels in a caBX chunk; splice one in before IEND.
    payload = b"c2pa manifest: secret-model-xl"
    import zlib

    chunk = len(payload).to_bytes(4, "big") + b"caBX" + payload
    chunk += zlib.crc32(b"caBX" + payload).to_bytes(4, "big")
    return raw[:-12] + chunk + raw[-12:]


def test_metadata_is_stripped_and_canvas_is_common():
    src = source_png((300, 100))
    assert b"secret-model-xl" in src and "caBX" in blind.png_chunks(src)
    out = blind.blind_png(src, (256, 256))
    assert b"secret-model-xl" not in out
    assert set(blind.png_chunks(out)) == {"IHDR", "IDAT", "IEND"}
    img = Image.open(io.BytesIO(out))
    assert img.size == (256, 256) and img.mode == "RGB" and not img.info.get("exif")
    # letterboxed: the image fills the width, bars above and below
    assert img.getpixel((128, 128)) == (255, 0, 0)
    assert img.getpixel((128, 5)) == blind.BACKGROUND and img.getpixel((128, 250)) == blind.BACKGROUND


def test_every_source_shape_gives_the_same_canvas_and_format():
    outs = [blind.blind_png(source_png(s, mode=m, colour=c), (128, 128))
            for s, m, c in [((64, 64), "RGB", (0, 255, 0)), ((10, 40), "RGBA", (0, 0, 255, 128)),
                            ((900, 30), "L", 200)]]
    for out in outs:
        img = Image.open(io.BytesIO(out))
        assert img.size == (128, 128) and img.mode == "RGB"
    # a tall image gets bars left and right
    tall = Image.open(io.BytesIO(outs[1]))
    assert tall.getpixel((2, 64)) == blind.BACKGROUND and tall.getpixel((64, 64)) != blind.BACKGROUND


def test_canvas_size_is_the_largest_side_clamped():
    def size(w, h):
        return SimpleNamespace(width=w, height=h)  # canvas_size reads only these of a Record

    assert blind.canvas_size([size(64, 64)]) == (256, 256)
    assert blind.canvas_size([size(512, 384), size(300, 600)]) == (600, 600)
    assert blind.canvas_size([size(2048, 2048)]) == (768, 768)
    assert blind.canvas_size([]) == (256, 256)
