"""WSS-CL unlearning studio: home page."""

import streamlit as st

st.set_page_config(page_title="WSS-CL unlearning studio", layout="wide")
st.title("WSS-CL unlearning studio")
st.write("Machine unlearning removes the influence of chosen training data from a trained classifier.")
