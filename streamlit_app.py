"""gr-explorer: `streamlit run streamlit_app.py`.

A thin view over the library: each page (gr_explorer/app/) calls run_sweep /
train and renders the library's figures and tables. (OMP_WAIT_POLICY=PASSIVE,
which keeps the probes fast on a busy CPU, is set by `import gr_explorer`
before torch loads; every page imports it first.)

A browser user is untrusted: the app reads and writes only inside its data
roots (GR_EXPLORER_DATA_ROOTS, see gr_explorer/app/roots.py), and a page
waiting for an unreachable network gives up after a few seconds.
"""

import os
from pathlib import Path

# An offline server must say so within seconds, not after the library's CLI-sized timeouts.
os.environ.setdefault("GR_EXPLORER_HUB_TIMEOUT", "3")
os.environ.setdefault("GR_EXPLORER_DOWNLOAD_TIMEOUT", "3")

import streamlit as st  # noqa: E402

# Pages are files (not callables) because AppTest.switch_page and st.switch_page address pages by file.
PAGES = Path(__file__).resolve().parent / "gr_explorer" / "app" / "pages"

st.set_page_config(page_title="gr-explorer: where to cut an SSL network", page_icon=":material/content_cut:",
                   layout="wide")
page = st.navigation([
    st.Page(PAGES / "explore.py", title="Explore", icon=":material/insights:", default=True),
    st.Page(PAGES / "compare.py", title="Compare", icon=":material/stacked_line_chart:"),
    st.Page(PAGES / "train.py", title="Train", icon=":material/model_training:"),
    st.Page(PAGES / "about.py", title="About", icon=":material/menu_book:"),
])
page.run()
