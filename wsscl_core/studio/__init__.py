"""What only the studio needs: background jobs, feature-space embeddings, plotly figures and the HTML report.

The rest of ``wsscl_core`` never imports this package, so the core runs headless without streamlit,
plotly or umap installed.
"""
