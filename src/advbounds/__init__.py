"""advbounds: a reproducible replication of J. Peck, *Robustness of Classifiers to
Adversarial Perturbations* (Ghent, 2017).

Sub-packages:
  data      -- dataset download, checksum verification, preparation, synthetic stand-ins
  models    -- the thesis's models as ``nn.Sequential`` stacks and a name -> class registry
  bounds    -- the layer-wise lower bounds (Chapters 3-5) and their composition (Algorithm 5.1)
  attacks   -- minimal-epsilon FGS/FGV search (Algorithm 2.1), exact linear minima
"""

__version__ = "0.1.0"
