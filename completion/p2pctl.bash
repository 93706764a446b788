# bash completion for p2pctl(1)
_p2pctl()
{
	local cur prev words cword
	_init_completion || return

	local commands="register login logout status index ls search download transfers cancel"
	local global="-s --socket -p --peer --json -q --quiet -t --timeout -h --help -V --version"
	local rundir=${P2P_RUNDIR:-/run/p2p}

	case $prev in
	-s|--socket)
		_filedir sock
		return ;;
	-p|--peer)
		local socks=("$rundir"/*.sock)
		[[ -e ${socks[0]} ]] || return
		socks=("${socks[@]##*/}")
		COMPREPLY=($(compgen -W "${socks[*]%.sock}" -- "$cur"))
		return ;;
	--password-file)
		_filedir
		return ;;
	--to)
		_filedir -d
		return ;;
	-t|--timeout|--limit|--offset|--from|--exact)
		return ;;
	esac

	local i cmd=
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-s|--socket|-p|--peer|-t|--timeout) ((i++)) ;;
		-*) ;;
		*) cmd=${words[i]}; break ;;
		esac
	done

	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$global" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		fi
		return
	fi

	local opts="--json -q --quiet -h --help"
	case $cmd in
	register|login) opts+=" --password-stdin --password-file" ;;
	search) opts+=" --exact --limit --offset" ;;
	download) opts+=" --from --to" ;;
	esac
	[[ $cur == -* ]] && COMPREPLY=($(compgen -W "$opts" -- "$cur"))
} && complete -F _p2pctl p2pctl
