package porcupine

// Annotation is copied from Porcupine's visualization.go, which this copy leaves out (it embeds the
// visualization's HTML and JavaScript): checker.go's LinearizationInfo names the type. Nothing here
// uses it.
type Annotation struct {
	ClientId        int
	Tag             string
	Start           int64
	End             int64
	Description     string
	Details         string
	TextColor       string
	BackgroundColor string
	_               struct{} // disallow positional literals, for extensibility
}
