"""One module per group of thesis experiments; each function returns plain data frames or dicts.

* :mod:`.linear`: Chapter 3 (Table 3.1, Figures 3.1, 3.2)
* :mod:`.activations`: Table 4.1 and Figure 2.1
* :mod:`.mlp`: Chapter 4 (Tables 4.2, 4.3, the trained MLPs, Figures 4.1-4.3)
* :mod:`.stacked`, :mod:`.deviations`: batched random classifiers, seeds and statistics shared by
  Chapters 3 and 4
* :mod:`.cnn`: Chapter 5

Chapters 3-4 beside the published numbers is the report's verdict table,
:mod:`advbounds.report.verdict_table`.

Submodules are imported on demand (``from advbounds.experiments import mlp``), so importing one does
not pay for the others.
"""
