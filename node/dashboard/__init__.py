"""The live dashboard every node serves at `/`: its document (`view`), the feed that streams it
(`feed`), its HTTP routes (`routes`), its assets (`assets/`) and the terminal view (`text`)."""
