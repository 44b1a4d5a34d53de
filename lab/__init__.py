"""lab: depth studies of plain and residual networks (He et al. 2015).

``from lab.train import train`` trains one run from a :class:`Config`; ``lab.sweep`` runs Optuna
studies of them; the top level holds what needs only torch and YAML.
"""
from lab.config import Config, ConfigError, load_config, make_config
from lab.nets import NetConfig, build_net, count_params, run_name

__all__ = ["Config", "ConfigError", "NetConfig", "build_net", "count_params", "load_config", "make_config", "run_name"]
