"""About page (a thin script so that st.navigation and AppTest can address it by file)."""

from gr_explorer.app.about import render
from gr_explorer.app.widgets import guarded

guarded(render)
