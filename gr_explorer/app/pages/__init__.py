"""Page scripts run by st.navigation (see streamlit_app.py)."""
