region = "eu-west-1"
db_password = "i96S2Am3Fe5EWLUHEsLVIejw"
