"""The Streamlit app's own code: pages, widgets, session state and background jobs.

Nothing here computes results: every number comes from the library
(run_sweep, plots, summary, training.train). `streamlit_app.py` at the
repository root wires the pages together with st.navigation.
"""
