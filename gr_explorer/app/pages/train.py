"""Train page (a thin script so that st.navigation and AppTest can address it by file)."""

from gr_explorer.app.train import render
from gr_explorer.app.widgets import guarded

guarded(render)
