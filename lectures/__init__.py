"""Lecture notebooks for live demos (``lectures/NN_topic.ipynb``) and their runner.

``python -m lectures.run --out build/lectures`` executes every notebook top to bottom and
renders it to HTML; see ``lectures/README.md``.
"""
