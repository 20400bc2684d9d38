"""`balance-lab report`: a sweep's runs from MLflow -> tables, paired differences, plots, files.

collect.py (MLflow -> pandas), stats.py (summaries, paired t-intervals), published.py (the
papers' numbers), plots.py, contents.py (what a report holds), make.py (fills and writes it),
render.py (terminal, Markdown, HTML). May import store/ and the layers below; never training/.
"""
