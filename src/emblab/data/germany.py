"""Facts about Germany that the Rossmann reader, the generator and the embedding maps share."""

# Approximate centroids (lat, lon) of the German states, and the weather file each one reads.
# "HB,NI" is Kaggle's combined code for Bremen + Lower Saxony: the midpoint, and Lower Saxony's weather.
STATES = {
    "BW": (48.54, 9.04, "BadenWuerttemberg"),
    "BY": (48.95, 11.40, "Bayern"),
    "BE": (52.52, 13.40, "Berlin"),
    "BB": (52.41, 13.01, "Brandenburg"),
    "HB": (53.08, 8.80, "Bremen"),
    "HH": (53.55, 10.00, "Hamburg"),
    "HE": (50.65, 9.16, "Hessen"),
    "MV": (53.61, 12.43, "MecklenburgVorpommern"),
    "NI": (52.64, 9.85, "Niedersachsen"),
    "NW": (51.43, 7.66, "NordrheinWestfalen"),
    "RP": (49.91, 7.45, "RheinlandPfalz"),
    "SL": (49.40, 6.95, "Saarland"),
    "SN": (51.10, 13.20, "Sachsen"),
    "ST": (51.95, 11.69, "SachsenAnhalt"),
    "SH": (54.22, 9.70, "SchleswigHolstein"),
    "TH": (50.90, 11.03, "Thueringen"),
    "HB,NI": (52.86, 9.33, "Niedersachsen"),
}
