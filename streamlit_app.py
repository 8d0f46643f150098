"""gr-explorer: `streamlit run streamlit_app.py`.

A thin view over the library: each page (gr_explorer/app/) calls run_sweep /
train and renders the library's figures and tables.
"""

import os
from pathlib import Path

# OpenMP threads that sleep instead of spin: with the app's background jobs (and other sessions or programs)
# sharing the CPU, spinning threads made the probes ~4x slower in our measurements; results are unchanged.
# Must be set before torch is first imported, i.e. here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st  # noqa: E402

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
