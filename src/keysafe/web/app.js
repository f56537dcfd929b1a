// placeholder until the web page lands
