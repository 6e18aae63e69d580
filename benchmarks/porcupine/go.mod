module chaosdojo/porcupinebench

go 1.16
