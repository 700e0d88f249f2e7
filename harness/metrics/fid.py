"""FID and KID of each model's image set against a reference set, from one feature pass.

- FID (Heusel et al., 2017): Fréchet distance between Gaussians fitted to the two feature sets,
  ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))``. Biased upward at small N: values
  computed on different N are not comparable, and below ~2,000 images it is mostly noise.
- KID (Binkowski et al., 2018): unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (mean and standard deviation).
  Unbiased, so usable at small N; reports show it beside FID.

The numbers depend on the feature extractor (and its weights file), the resize filter and size,
the sample counts and the KID subsets: all are stored with each value. Only Inception-v3 with
the TF FID weights gives numbers comparable to published FID; the offline default
(EfficientNet-Lite0) is labelled as not comparable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ConfigError, did_you_mean
from harness.metrics.base import Metric, ReadingNotes, ScoreInput
from harness.metrics.features import (
    RESIZE_FILTER,
    FeatureError,
    FeatureExtractor,
    build_extractor,
    file_sha256,
)
from harness.metrics.resize import RESIZE_MODES
from harness.toyworld.paths import resolve_path
from harness.types import canonical_json, sha256_hex

MODE_NOTES = {
    "clean": " (clean-fid's default mode; compare only with FIDs made in mode clean)",
    "legacy_pytorch": " (pytorch-fid's resize; compare only with pytorch-fid numbers)",
    "legacy_tensorflow": (" (the TF FID code's resize; compare only with TF FID / clean-fid "
                          "legacy_tensorflow numbers)"),
}
"""Which published numbers a FID in each mode may be compared with (with the Inception-v3
features and a reference made the same way)."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
FEW_IMAGES = 2000
"""Below this many images per set, reports warn that FID is unreliable."""
CACHE_VERSION = "1"
HOW_TO_SET = ("set a reference with metrics.{name}.settings.reference=/path/to/folder (of images), "
              "=/path/to/stats.npz (with mu and sigma, optionally features) or =suite (the suite's "
              "reference_image controls)")


# -- the numbers ----------------------------------------------------------------------------------


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (ddof=1) of an (n, d) feature array, in float64."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need an (n >= 2, d) feature array, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, *, feats1: np.ndarray | None = None) -> float:
    """tr(sqrt(S1 S2)) for symmetric PSD S1, S2: the sum of the square roots of the eigenvalues
    of S1 S2 (real and >= 0 in exact arithmetic; clipped at 0 here).

    They are found with a symmetric solver (faster and more accurate than a general
    ``eigvals(S1 @ S2)``, and much faster than ``scipy.linalg.sqrtm``: benchmarks/fid_speed.py)
    on a symmetric matrix with the same non-zero eigenvalues:

    - ``feats1`` (the n samples S1 was computed from) with n <= d: S1 = A^T A / (n - 1) for the
      centred samples A, and S1 S2 shares its non-zero eigenvalues with the n x n matrix
      A S2 A^T / (n - 1): small sets cost O(n d^2), not O(d^3).
    - else L^T S2 L with L L^T = S1 (Cholesky), or L^T S1 L with L L^T = S2 when S1 is singular
      (eig(S1 S2) = eig(S2 S1)), or L = V sqrt(W) from S1's eigendecomposition when both are.
    """
    import scipy.linalg as sl

    s1 = np.asarray(s1, dtype=np.float64)
    s2 = np.asarray(s2, dtype=np.float64)
    if feats1 is not None and 1 < len(feats1) <= s1.shape[0]:
        a = np.asarray(feats1, dtype=np.float64)
        a = a - a.mean(axis=0)
        m = (a @ s2 @ a.T) / (len(a) - 1)
    else:
        m = None
        for x, y in ((s1, s2), (s2, s1)):
            try:
                lo = sl.cholesky(x, lower=True, check_finite=True)
            except np.linalg.LinAlgError:
                continue
            m = lo.T @ y @ lo
            break
        if m is None:
            # Both singular (fewer samples than dimensions): a PSD square root of S1.
            w, v = sl.eigh(s1, check_finite=False)
            lo = v * np.sqrt(np.clip(w, 0.0, None))
            m = lo.T @ s2 @ lo
    ev = sl.eigvalsh((m + m.T) / 2, check_finite=False)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def trace_sqrt_product_eigvals(s1: np.ndarray, s2: np.ndarray) -> float:
    """Same quantity from a general (non-symmetric) eigensolver on S1 @ S2 (for comparison)."""
    ev = np.linalg.eigvals(np.asarray(s1, np.float64) @ np.asarray(s2, np.float64))
    return float(np.sqrt(np.clip(ev.real, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray, *,
                     feats1: np.ndarray | None = None) -> float:
    """Fréchet distance between N(mu1, S1) and N(mu2, S2); ``feats1``, the samples behind
    (mu1, S1), make it fast for small sets (see :func:`trace_sqrt_product`)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    if mu1.shape != mu2.shape or np.shape(s1) != np.shape(s2) or np.shape(s1) != mu1.shape * 2:
        raise ValueError(f"statistics don't match: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {np.shape(s1)} vs {np.shape(s2)}")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2, feats1=feats1))
    # Rounding can take identical statistics a hair below zero.
    return max(value, 0.0)


def frechet_distance_sqrtm(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """The textbook computation with ``scipy.linalg.sqrtm`` (reference for tests and benchmarks)."""
    import scipy.linalg as sl

    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    covmean = sl.sqrtm(np.asarray(s1, np.float64) @ np.asarray(s2, np.float64))
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean).real)


def kid(f1: np.ndarray, f2: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float, int]:
    """KID: mean and standard deviation over ``subsets`` random subsets (drawn without
    replacement, the same size m from each set) of the unbiased MMD^2 with the kernel
    ``(x.y / d + 1)^3``. m = min(subset_size, n1, n2). Returns (mean, std, m)."""
    x = np.asarray(f1, dtype=np.float64)
    y = np.asarray(f2, dtype=np.float64)
    m = min(int(subset_size), len(x), len(y))
    if m < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {len(x)} and {len(y)}")
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    vals = np.empty(subsets)
    for i in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        vals[i] = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                   + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                   - 2 * kxy.sum() / (m * m))
    return float(vals.mean()), float(vals.std()), m


# -- reference sets -------------------------------------------------------------------------------


@dataclass
class Reference:
    """Statistics (and features when known) of a reference set."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None
    n: int
    source: str
    """Folder, npz path or ``suite``."""
    sha256: str
    """Content hash of the reference (folder hash, npz file hash, or suite images' hash)."""
    notes: list[str] = field(default_factory=list)
    cached: bool = False


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under a folder (recursive, sorted, hidden files skipped); errors name it."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise FeatureError(f"reference folder {root} not found")
    if not root.is_dir():
        raise FeatureError(f"reference {root} is neither a folder of images nor an .npz file")
    try:
        files = sorted(p for p in root.rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
    except OSError as e:
        raise FeatureError(f"reference folder {root} can't be read: {e}") from None
    if not files:
        raise FeatureError(f"reference folder {root} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def folder_hash(folder: str | os.PathLike[str], files: Sequence[Path] | None = None) -> str:
    """sha256 over the sorted (relative path, size, sha256 of content) of a folder's images."""
    root = Path(folder).expanduser()
    files = list_images(root) if files is None else files
    rows = []
    for p in files:
        try:
            rows.append((p.relative_to(root).as_posix(), p.stat().st_size, file_sha256(p)))
        except OSError as e:
            raise FeatureError(f"reference image {p} can't be read: {e}") from None
    return sha256_hex(canonical_json(sorted(rows)))


def _stat_signature(root: Path, files: Sequence[Path]) -> tuple:
    return tuple((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns)
                 for p in files for st in [p.stat()])


def load_npz_reference(path: Path, dim: int) -> Reference:
    """A precomputed reference: .npz with ``mu`` (d,) and ``sigma`` (d, d), optionally
    ``features`` (n, d) (needed for KID) and ``n``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise FeatureError(f"reference statistics {path} can't be read as .npz: {e}") from None
    if "mu" not in data or "sigma" not in data:
        raise FeatureError(f"reference statistics {path} must hold arrays 'mu' and 'sigma' "
                           f"(found: {', '.join(sorted(data)) or 'none'})")
    mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
    if mu.shape != (dim,) or sigma.shape != (dim, dim):
        raise FeatureError(f"reference statistics {path}: mu {mu.shape} / sigma {sigma.shape} don't "
                           f"match the feature extractor's dimension {dim}: made with another extractor?")
    feats = data.get("features")
    if feats is not None and (feats.ndim != 2 or feats.shape[1] != dim):
        raise FeatureError(f"reference statistics {path}: features {feats.shape} don't match dimension {dim}")
    n = int(data["n"]) if "n" in data else (len(feats) if feats is not None else 0)
    notes = ["reference statistics precomputed (.npz): comparable only if made with the same "
             "extractor, weights and resize"]
    return Reference(mu, sigma, feats, n, str(path), file_sha256(path), notes)


# -- the metric -----------------------------------------------------------------------------------


class FeatureCache:
    """Per-image features of one extractor (its identity hashed into the file name) in a small
    SQLite file: image sha256 -> float32 vector. Rows of the wrong length are ignored."""

    def __init__(self, root: Path, extractor: FeatureExtractor) -> None:
        key = sha256_hex(canonical_json({"v": CACHE_VERSION, "extractor": extractor.describe()}))[:32]
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / f"{extractor.name}-{key}.sqlite"
        self.dim = extractor.dim

    def _connect(self) -> Any:
        import sqlite3

        con = sqlite3.connect(self.path, timeout=60)
        con.execute("CREATE TABLE IF NOT EXISTS features (sha256 TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        return con

    def get(self, shas: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        con = self._connect()
        try:
            unique = sorted(set(shas))
            for i in range(0, len(unique), 500):
                part = unique[i : i + 500]
                rows = con.execute(f"SELECT sha256, vec FROM features WHERE sha256 IN "
                                   f"({','.join('?' * len(part))})", part).fetchall()
                for sha, blob in rows:
                    if len(blob) == 4 * self.dim:
                        out[sha] = np.frombuffer(blob, dtype=np.float32)
        finally:
            con.close()
        return out

    def put(self, rows: Sequence[tuple[str, np.ndarray]]) -> None:
        con = self._connect()
        try:
            with con:
                con.executemany("INSERT OR REPLACE INTO features VALUES (?, ?)",
                                [(sha, np.asarray(v, dtype=np.float32).tobytes()) for sha, v in rows])
        finally:
            con.close()


class FID(Metric):
    """FID and KID of each model's images against a reference set (one feature pass)."""

    kind = "fid"
    per = "set"
    higher_is_better = False
    version = "1"
    outputs = {"fid": False, "kid": False}
    defaults = {
        "features": "efficientnet_lite0",
        "mode": "clean",
        "weights": None,
        "clip_model": "ViT-B-32",
        "reference": None,
        "kid_subsets": 100,
        "kid_subset_size": 1000,
        "kid_seed": 0,
        # Runtime only: they don't change the number, so describe() leaves them out.
        "device": "auto",
        "batch_size": 32,
        "cpu_streams": "auto",
    }
    """features: extractor name (efficientnet_lite0, inception, clip, dinov2, clip_hf); mode:
    how images are resized to the extractor's input (clean-fid's modes: ``clean`` = PIL bicubic,
    ``legacy_pytorch`` = pytorch-fid's bilinear inside the network, ``legacy_tensorflow`` = the TF
    FID code's TF1 bilinear); weights: weights file (or
    open_clip tag) when the extractor needs one; clip_model: open_clip model name or config JSON
    (features=clip only); reference: folder, .npz, ``suite`` or None; kid_*: KID subsets.
    device (auto: cuda, else cpu), batch_size (images per forward pass) and cpu_streams (batches
    in flight on the CPU; auto = one per core up to 4) don't change the number."""
    runtime = ("device", "batch_size", "cpu_streams")

    def __init__(self, *, name: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        s = self.settings
        device = None if s["device"] in (None, "auto") else str(s["device"])
        kwargs: dict[str, Any] = {"weights": s["weights"], "device": device}
        if s["features"] == "clip":
            kwargs["clip_model"] = s.get("clip_model", "ViT-B-32")
        self.extractor: FeatureExtractor = build_extractor(s["features"], **kwargs)
        if hasattr(self.extractor, "setting"):
            self.extractor.setting = f"metrics.{name}.settings.weights"
        if s["mode"] not in RESIZE_MODES:
            raise ConfigError(f"metrics.{name}.settings.mode: unknown FID mode {s['mode']!r}."
                              + did_you_mean(str(s["mode"]), list(RESIZE_MODES))
                              + f" Known: {', '.join(RESIZE_MODES)} (as clean-fid names them).")
        self.extractor.resize_mode = str(s["mode"])
        for key in ("batch_size", "cpu_streams"):
            v = s[key]
            if key == "cpu_streams" and v in (None, "auto"):
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"metrics.{name}.settings.{key}: must be an integer >= 1"
                                  + (" or auto" if key == "cpu_streams" else "") + f", got {v!r}.")
        self.extractor.batch_size = int(s["batch_size"])
        if s["cpu_streams"] not in (None, "auto"):
            self.extractor.streams = int(s["cpu_streams"])
        self._ref: Reference | None = None
        self._folder_memo: tuple[tuple, str] | None = None

    # -- identity --------------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        d = super().identity()
        fx = self.extractor.describe()
        d.update(features=fx["name"], label=fx["label"], extractor=fx, resize=fx.get("resize", RESIZE_FILTER),
                 image_size=fx.get("input_size"))
        # The reference's content changes the number, so it is part of the settings hash: a
        # changed folder is rescored. Unreadable references are reported at scoring time.
        try:
            d["reference_sha256"] = self._reference_hash()
        except FeatureError:
            d["reference_sha256"] = None
        return d

    def settings_hash(self) -> str:
        """As :meth:`Metric.settings_hash`, except that ``mode: clean`` is left out of the hash
        (it is still stored with every value): values stored before modes existed were made in
        the clean mode, and stay valid instead of being recomputed."""
        d = self.identity()
        if d.get("mode") == "clean":
            del d["mode"]
        return sha256_hex(canonical_json(d))[:16]

    FEW_IMAGES = 2000
    """Below this many images per model FID is biased upward and noisy (KID is not biased)."""

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """Which features the numbers rest on (a FID on other features is not comparable to
        published FID), and a warning for each model with fewer than :attr:`FEW_IMAGES` images."""
        return ReadingNotes(
            table_title="FID / KID",
            table_note=(f"{identity.get('label') or 'FID'}; features `{identity.get('features', '?')}`, "
                        f"mode `{identity.get('mode', 'clean')}`: {identity.get('resize', '?')} resize to "
                        f"{identity.get('image_size', '?')} px"
                        + MODE_NOTES.get(str(identity.get('mode', 'clean')), "") + "."),
            min_images=self.FEW_IMAGES,
            few_images=("FID rests on N={n} images (< {min_images:,}): biased upward and noisy; "
                        "compare KID = {kid} (unbiased)."))

    def _reference_hash(self) -> str | None:
        ref = self.settings.get("reference")
        if ref is None or ref == "suite":
            return None
        p = resolve_path(ref)
        if p.suffix.lower() == ".npz":
            return file_sha256(p) if p.is_file() else None
        files = list_images(p)
        return self._folder_hash(p, files)

    def _folder_hash(self, root: Path, files: Sequence[Path]) -> str:
        # Hashing every file is the only safe identity, and it is slow for big folders: remember
        # it while sizes and mtimes stay the same (within this metric instance).
        sig = (str(root.resolve()), _stat_signature(root, files))
        if self._folder_memo and self._folder_memo[0] == sig:
            return self._folder_memo[1]
        h = folder_hash(root, files)
        self._folder_memo = (sig, h)
        return h

    # -- reference -------------------------------------------------------------------------------

    def reference(self, items: Sequence[ScoreInput] = ()) -> Reference:
        """The reference statistics, from the feature cache when the same extractor already saw
        the same reference content."""
        ref = self.settings["reference"]
        if self._ref is not None and self._ref.source == str(ref) and ref != "suite":
            return self._ref
        if ref == "suite":
            out = self._suite_reference(items)
        else:
            p = resolve_path(ref)
            if p.suffix.lower() == ".npz":
                if not p.is_file():
                    raise FeatureError(f"reference statistics {p} not found")
                out = load_npz_reference(p, self._dim())
            else:
                files = list_images(p)
                out = self._images_reference(str(p), files, self._folder_hash(p, files), root=p)
        self._ref = out
        return out

    def _dim(self) -> int:
        if not self.extractor.dim:
            self.extractor.load()
        return self.extractor.dim

    def _suite_reference(self, items: Sequence[ScoreInput]) -> Reference:
        by_sha: dict[str, str] = {}
        for it in items:
            for c in it.prompt.get("controls") or []:
                if c.get("kind") == "reference_image" and c.get("path"):
                    by_sha.setdefault(c.get("sha256") or c["path"], c["path"])
        if not by_sha:
            raise FeatureError("reference=suite, but the suite's prompts carry no reference_image "
                               "controls; " + HOW_TO_SET.format(name=self.name))
        shas = sorted(by_sha)
        h = sha256_hex(canonical_json(shas))
        return self._images_reference("suite", [Path(by_sha[s]) for s in shas], h, root=None)

    def _images_reference(self, source: str, files: Sequence[Path], content_hash: str,
                          root: Path | None) -> Reference:
        if len(files) < 2:
            raise FeatureError(f"reference {source} has {len(files)} image(s); FID needs at least 2 "
                               "(thousands for a stable value)")
        key = sha256_hex(canonical_json({"v": CACHE_VERSION, "extractor": self.extractor.describe(),
                                         "reference": content_hash}))[:32]
        cache = (Path(self.cache_dir) / "fid_ref" / f"{self.extractor.name}-{key}.npz"
                 if self.cache_dir else None)
        if cache is not None and cache.is_file():
            try:
                with np.load(cache, allow_pickle=False) as z:
                    feats = z["features"]
                    meta = json.loads(str(z["meta"]))
                mu, sigma = feature_stats(feats)
                return Reference(mu, sigma, feats, len(feats), source, content_hash,
                                 list(meta.get("notes", [])), cached=True)
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is recomputed and overwritten
        converted: list[str] = []

        def on_converted(src: Any, mode: str) -> None:
            converted.append(f"{Path(src).relative_to(root) if root else Path(src).name} ({mode})")

        feats = self.extractor.extract_all(list(files), on_converted=on_converted)
        notes = []
        if converted:
            notes.append(f"{len(converted)} reference image(s) converted to RGB: "
                         + ", ".join(sorted(converted)[:5]) + (" ..." if len(converted) > 5 else ""))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
            np.savez(tmp, features=feats, meta=np.array(json.dumps({"notes": notes, "source": source})))
            os.replace(tmp, cache)
        mu, sigma = feature_stats(feats)
        return Reference(mu, sigma, feats, len(feats), source, content_hash, notes)

    # -- scoring ---------------------------------------------------------------------------------

    def score_set(self, items: Sequence[ScoreInput]) -> tuple[dict[str, float | None], dict[str, Any]]:
        s = self.settings
        label = self.extractor.label
        none = {"fid": None, "kid": None}
        if s["reference"] is None:
            return none, {"label": label, "skipped": "no reference set configured: "
                          + HOW_TO_SET.format(name=self.name)}
        if len(items) < 2:
            return none, {"label": label, "n": len(items),
                          "skipped": f"FID needs at least 2 images per model (covariance), got {len(items)}"}
        ref = self.reference(items)
        try:
            feats, n_cached = self._features(items)
        except FeatureError as e:
            # A corrupt stored image: this model's set gets no value (the reason names the image);
            # other models and stored scores are unaffected.
            return none, {"label": label, "n": len(items), "skipped": str(e)}
        mu, sigma = feature_stats(feats)
        fid = frechet_distance(mu, sigma, ref.mu, ref.sigma, feats1=feats)
        extra: dict[str, Any] = {"label": label, "mode": s["mode"], "n": len(items),
                                 "features_cached": n_cached,
                                 "n_reference": ref.n,
                                 "reference": ref.source, "reference_sha256": ref.sha256,
                                 "reference_cached": ref.cached, "notes": list(ref.notes)}
        warnings = []
        if min(len(items), ref.n or len(items)) < FEW_IMAGES:
            warnings.append(f"FID rests on {len(items)} generated / {ref.n} reference images "
                            f"(< {FEW_IMAGES}): biased upward and noisy, compare KID")
        kid_value = None
        if ref.features is None:
            extra["kid_skipped"] = ("the reference is precomputed statistics without features: "
                                    "KID needs reference features (use a folder or an .npz with 'features')")
        else:
            kid_value, kid_std, m = kid(feats, ref.features, subsets=int(s["kid_subsets"]),
                                        subset_size=int(s["kid_subset_size"]), seed=int(s["kid_seed"]))
            extra.update(kid_std=kid_std, kid_subset_size=m, kid_subsets=int(s["kid_subsets"]))
            if m < int(s["kid_subset_size"]):
                extra["notes"].append(f"KID subset size shrunk from {s['kid_subset_size']} to {m} "
                                      "(fewer images than the subset size)")
        extra["warnings"] = warnings
        return {"fid": fid, "kid": kid_value}, extra

    def _features(self, items: Sequence[ScoreInput]) -> tuple[np.ndarray, int]:
        """Features of the generated images, and how many came from the per-image cache
        (``<store>/cache/features``, keyed by the extractor's identity and each image's hash):
        a changed reference or KID setting, or a run that grew, extracts only what is new."""
        names = [f"{it.key} (model {it.model})" for it in items]
        cache = None
        if self.cache_dir is not None and all(it.image_sha256 for it in items):
            self._dim()  # an extractor that learns its dimension on loading: load it first
            cache = FeatureCache(Path(self.cache_dir) / "features", self.extractor)
        known = cache.get([str(it.image_sha256) for it in items]) if cache else {}
        todo = [i for i, it in enumerate(items) if it.image_sha256 not in known]
        fresh = self.extractor.extract_all([items[i].image for i in todo], names=[names[i] for i in todo])
        if cache is not None and todo:
            cache.put([(str(items[i].image_sha256), f) for i, f in zip(todo, fresh, strict=True)])
        by_index = dict(zip(todo, fresh, strict=True))
        feats = np.stack([by_index[i] if i in by_index else known[str(it.image_sha256)]
                          for i, it in enumerate(items)])
        return feats.astype(np.float32, copy=False), len(items) - len(todo)

    def close(self) -> None:
        self.extractor.close()
        self._ref = None
