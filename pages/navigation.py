"""Navigation helpers that need only Streamlit, so the Home page can draw before torch is imported."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

NAVIGATION_READY = "studio_navigation_ready"


@st.cache_resource(show_spinner=False)
def enter_through_app(page_file: str) -> None:
    """Send a visit that skipped app.py (a deep link on a fresh session) through it, then back here."""
    if not st.session_state.get(NAVIGATION_READY):
        st.session_state["deep_link"] = f"pages/{Path(page_file).name}"
        st.session_state["deep_link_query"] = {k: st.query_params.get_all(k) for k in st.query_params}
        st.switch_page("app.py")


def forward_deep_link() -> None:
    """Called by app.py once its navigation exists: finish a deep link that arrived before it."""
    target = st.session_state.pop("deep_link", None)
    query = st.session_state.pop("deep_link_query", None)
    if target:
        st.switch_page(target, query_params=query or None)


def run_in_progress() -> bool:
    """Whether this session has a run going, without importing the library (no run, no import needed)."""
    jobs = st.session_state.get("jobs")
    return jobs is not None and jobs.busy
