"""The web app that teaches a recogniser from a few photos, keeps it, and exports it.

Needs the ``serve`` extra (``pip install 'litemeta[serve]'``): FastAPI, uvicorn,
python-multipart, and onnx for export.
"""
