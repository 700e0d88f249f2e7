"""The blind pairwise rating app: pair scheduling (:mod:`harness.app.pairs`), quality control
(:mod:`harness.app.qc`), blinding of images (:mod:`harness.app.blind`), the rating logic over the
store (:mod:`harness.app.service`) and the Streamlit page (``rate_app.py``, run by ``harness rate``).

Importing this package does not import Streamlit; only ``rate_app.py`` does.
"""
