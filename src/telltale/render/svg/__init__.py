"""Server-side SVG charts shared by the HTML report and the web dashboard (no JavaScript)."""

from telltale.render.svg.charts import bar_chart_svg, sparkline_svg, volume_svg
from telltale.render.svg.heatmap import heatmap_svg
from telltale.render.svg.service_map import service_map_svg
from telltale.render.svg.waterfall import waterfall_svg

__all__ = ["bar_chart_svg", "heatmap_svg", "service_map_svg", "sparkline_svg", "volume_svg",
           "waterfall_svg"]
