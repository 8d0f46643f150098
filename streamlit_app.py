"""gr-explorer: `streamlit run streamlit_app.py`.

A thin view over the library: each page (gr_explorer/app/) calls run_sweep /
train and renders the library's figures and tables. (OMP_WAIT_POLICY=PASSIVE,
which keeps the probes fast on a busy CPU, is set by `import gr_explorer`
before torch loads; every page imports it first.)
"""

from pathlib import Path

import streamlit as st

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
